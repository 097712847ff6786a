"""Packed-weight fp32 GEMMs on the CPU: oneDNN's or MKL's, whichever this machine runs faster.

A decode step multiplies a few dozen rows by every weight matrix of the model: short products whose cost on a CPU
is dominated by how the weight is streamed, not by arithmetic. PyTorch's default CPU GEMM repacks each weight on
every call; both oneDNN and MKL can pack a weight once into their own blocked layout (what inductor's CPU freezing
does) and multiply by it many times. Which of the two is faster depends on the CPU, measured on SmolLM2-135M's
30 layers of 576x1536 and 1536x576 products at 57 rows, 2 threads:

- AMD EPYC (AVX2): oneDNN packed 15-35 % faster than PyTorch's default at 4 to 64 rows;
- Intel Xeon (AVX-512, AMX): MKL packed 199 GFLOP/s against oneDNN packed's 145 and the default's 151.

So :func:`gemm_backend` measures both once per process on two such products and keeps the faster one;
``GRACE_CPU_GEMM=mkl`` or ``onednn`` pins the choice (``auto``, the default, measures). Both give ``F.linear``'s
result to float rounding (another summation order); the choice changes speed, not what the model computes.

MKL's packed weight serves any row count (its size is the same whatever rows it was packed for, and products at 1
to 300 rows from one packing equal the unpacked ones to the bit), so the row count of each call is passed as the
packing size: PyTorch's op would otherwise fall back to the unpacked GEMM whenever the rows differ from it, as they
do each time a decode drops finished rows. The speed does depend on the rows packed for (see ``cpu_linears``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cache, partial

import torch


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


Product = Callable[[torch.Tensor], torch.Tensor]
"""A packed linear layer: ``inputs (..., K) -> outputs (..., N)``."""

BACKENDS = ("onednn", "mkl")
"""The packed-GEMM libraries :func:`gemm_backend` chooses from."""

PROBE_ROWS = 32
"""Rows of the probe's products: a typical decode step's, after some rows have finished."""


def _onednn_product(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Product:
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
    return partial(_onednn_forward, packed, bias)


def _onednn_forward(packed: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(inputs, packed, bias, "none", [], "")


def _mkl_product(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Product:
    packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)
    # the op reads only the original weight's shape on the packed path: a broadcast of one number keeps no copy
    shape = weight.new_zeros((1, 1)).expand(weight.shape)
    return partial(_mkl_forward, packed, shape, bias)


def _mkl_forward(
    packed: torch.Tensor, shape: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor
) -> torch.Tensor:
    rows = inputs.numel() // inputs.shape[-1]
    return torch.ops.mkl._mkl_linear(inputs, packed, shape, bias, rows)


PACKERS: dict[str, Callable[[torch.Tensor, torch.Tensor | None, int], Product]] = {
    "onednn": _onednn_product,
    "mkl": _mkl_product,
}


@cache
def _works(backend: str) -> bool:
    """Whether this torch build runs ``backend``'s packed linear right (private ops: probed, not assumed)."""
    if backend == "onednn" and not torch.backends.mkldnn.is_available():
        return False
    if backend == "mkl" and not torch.backends.mkl.is_available():
        return False
    try:
        weight, bias, inputs = torch.arange(6.0).reshape(3, 2), torch.ones(3), torch.arange(10.0).reshape(5, 2)
        product = PACKERS[backend](weight, bias, 4)
        return all(torch.equal(product(x), x @ weight.T + bias) for x in (inputs, inputs[:1], inputs[None]))
    except (AttributeError, RuntimeError):
        return False


def _probe_seconds(backend: str, repeats: int = 7) -> float:
    """Best time of one 576x1536 and one 1536x576 product at :data:`PROBE_ROWS` rows (SmolLM2's MLP shapes)."""
    generator = torch.Generator().manual_seed(0)
    products = []
    for out_features, in_features in ((1536, 576), (576, 1536)):
        weight = torch.randn((out_features, in_features), generator=generator)
        inputs = torch.randn((PROBE_ROWS, in_features), generator=generator)
        products.append((PACKERS[backend](weight, None, PROBE_ROWS), inputs))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for product, inputs in products:
            product(inputs)
        best = min(best, time.perf_counter() - start)
    return best


@cache
def gemm_backend() -> str | None:
    """The packed-GEMM library this process uses: ``GRACE_CPU_GEMM`` if set, else the faster one measured here.

    None where neither runs in this torch build (the linear layers then keep PyTorch's own GEMM).
    """
    choice = os.environ.get("GRACE_CPU_GEMM", "auto").strip().lower()
    if choice not in ("auto", *BACKENDS):
        options = ", ".join(("auto", *BACKENDS))
        raise GraceUserError(f"GRACE_CPU_GEMM={choice!r} is not one of {options}; unset it or pick one of those.")
    usable = [backend for backend in BACKENDS if _works(backend)]
    if choice != "auto":
        return choice if choice in usable else None
    if len(usable) < 2:
        return usable[0] if usable else None
    with torch.no_grad():
        _probe_seconds(usable[0], repeats=1)  # warm-up: first-call allocations and thread start
        return min(usable, key=_probe_seconds)


def packed_product(weight: torch.Tensor, bias: torch.Tensor | None, rows: int) -> Product:
    """``weight`` (and ``bias``) packed once by :func:`gemm_backend`'s library for ``rows``-row inputs."""
    backend = gemm_backend()
    if backend is None:
        raise RuntimeError("No packed CPU GEMM runs in this torch build; check gemm_backend() before packing.")
    return PACKERS[backend](weight, bias, rows)
