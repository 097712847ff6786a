"""Which generation path a GRACE module takes: the installed library's single pass, or ``generate`` plus a forward.

A saved GRACE folder carries this file, so the folder decides at load time, from what is installed, not from what
was installed when it was saved: with ``grace_st`` at :data:`~settings.MIN_LIBRARY_VERSION` or newer, the library's
single pass (one generation gives the rationale and the hidden states, with the CPU kernels; it reaches into
transformers internals, which the installed library's version bounds cover); without it, ``generate`` and one
forward (:func:`~two_pass.generate_then_embed`: public APIs only, same rationales and vectors, slower).
:func:`two_pass_generation` forces the second path for comparisons.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cache
from typing import Any

import torch

from .settings import MIN_LIBRARY_VERSION
from .two_pass import GeneratedBatch, generate_then_embed


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


GenerateFn = Callable[..., GeneratedBatch]


@cache
def library_single_pass() -> GenerateFn | None:
    """The installed library's single pass, or None where grace_st is missing or older than the folder needs.

    Resolved once per process. Without it the module generates with :func:`generate_then_embed` (public APIs only).
    """
    try:
        from grace_st import __version__
        from grace_st.modeling.single_pass import generate_with_hidden_states
    except ImportError:
        return None
    from packaging.version import Version

    if Version(__version__) < Version(MIN_LIBRARY_VERSION):
        warnings.warn(
            f"grace-st {__version__} is installed, but this GRACE module needs {MIN_LIBRARY_VERSION} or newer for the "
            "fast single pass; it generates with plain generate() and one forward instead (same vectors, slower). "
            "Upgrade grace-st for the fast path.",
            UserWarning,
            stacklevel=2,
        )
        return None
    return generate_with_hidden_states


_two_pass_forced = False


@contextmanager
def two_pass_generation() -> Iterator[None]:
    """Within the block, modules generate as a folder loaded without this library does (``generate`` + one forward).

    For comparisons only (the tests hold the single pass equal to it; the speed benchmark times it); outside such a
    block an installed library always takes the single pass.
    """
    global _two_pass_forced
    previous, _two_pass_forced = _two_pass_forced, True
    try:
        yield
    finally:
        _two_pass_forced = previous


def generate_fn() -> GenerateFn:
    """The path this process takes now: the single pass where the library allows it, unless forced to two passes."""
    fast = None if _two_pass_forced else library_single_pass()
    return fast or generate_then_embed


def refill_fn() -> GenerateFn | None:
    """The installed library's refilled decode (``grace_st.modeling.refill``), where the single pass is in use."""
    if _two_pass_forced or library_single_pass() is None:
        return None
    try:  # in a try block: a folder's copy must not list grace_st as a required package (transformers scans imports)
        from grace_st.modeling.refill import generate_refilled
    except ImportError:
        return None
    return generate_refilled


def linear_weights(model: Any, rows: int, int8: bool) -> AbstractContextManager[None]:
    """The linear layers' weights for one forward of ``rows`` rows: as they are, or int8 products (``int8``).

    int8 needs the installed library's single pass (``grace_st.modeling.cpu_linears``) and an fp32 backbone on the
    CPU; anything else is refused with the fix rather than silently run in fp32.
    """
    if not int8:
        return nullcontext()
    library = None
    if not _two_pass_forced and library_single_pass() is not None:
        try:  # in a try block, as in refill_fn
            from grace_st.modeling.cpu_linears import int8_linears, packed_linears

            library = (int8_linears, packed_linears)
        except ImportError:
            pass
    parameter = next(model.parameters())
    if library is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        where = f"on {parameter.device.type} in {str(parameter.dtype).removeprefix('torch.')}"
        missing = "" if library is not None else ", without grace-st's single pass"
        raise GraceUserError(
            f"int8=True needs an fp32 backbone on the CPU and grace-st installed; this one runs {where}{missing}. "
            "Set int8=False (model[0].int8 = False), or load the model with device='cpu' and grace-st installed."
        )
    return _int8_weights(model, rows, *library)


@contextmanager
def _int8_weights(model: Any, rows: int, int8_linears: Any, packed_linears: Any) -> Iterator[None]:
    with int8_linears(), packed_linears(model, rows):
        yield
