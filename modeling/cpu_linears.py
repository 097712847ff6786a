"""The model's linear layers on packed weights (packed once, kept while unchanged), while decoding on a CPU.

A decode step multiplies a few dozen rows by every weight matrix of the model; PyTorch's default CPU GEMM repacks
each weight on every call. Here each weight is packed once by the faster packed-GEMM library of this
machine (:mod:`.cpu_gemm`: oneDNN or MKL), and sibling layers that read the same input (q/k/v, gate/up) run as one
product over their stacked weights. Packing all 134M weights of SmolLM2-135M takes 0.15-0.6 s, so it is done only
for batches of at least :data:`PACK_MIN_ROWS` rows (a one-row call would not earn it back), and only while the
packed copy stays under :data:`PACK_MAX_BYTES` (big models on a CPU keep one set of weights). The copy is kept with
the model for its next call while the weights are unchanged (:func:`release_packed` frees it).

Only plain fp32 CPU ``nn.Linear`` modules with no replaced ``forward`` are packed (accelerate's hooks keep theirs).
A PEFT LoRA linear in eval mode (training rollouts run the policy with its adapter active) is packed with its
adapters folded in, ``W + B A * scaling`` (PEFT's own ``get_delta_weight``), computed per call and never written
back: the same outputs to float rounding, without the adapter's extra small products and Python on every step;
adapter variants (DoRA, ...) and LoRA biases keep PEFT's forward. Outputs agree with ``F.linear`` to float rounding
(a different summation order); the single-pass tests hold the whole encode equal to the two-pass path.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

import torch

from .cpu_gemm import GraceUserError, Product, gemm_backend, packed_product
from .int8_linears import int8_product, int8_works


PACK_MIN_ROWS = 2
"""Smallest batch whose decode saves more than the one-off packing costs."""

PACK_FOR_ROWS = 64
"""Fewest rows the weights are packed for: a packing for more rows serves fewer at the same speed (see
:func:`_products`), so a small first call (a warm-up, a short list) packs once for the batches that follow."""

PACKED_MAX_ROWS = 256
"""Largest input (rows) multiplied by the packed weights. At a few hundred rows and more every GEMM library runs at
the matmul rate, and MKL's packed product measured slower in the whole model there (a 64 x 60-token prefill:
4.2 s against oneDNN's 3.1 s, the elementwise operations around it slower too), so prefills keep PyTorch's own."""

PACK_MAX_BYTES = 2 * 1024**3
"""Largest packed copy of the linear weights made and kept (SmolLM2-135M: about 0.5 GB)."""


def _plain_cpu_linear(module: Any) -> bool:
    return (
        type(module) is torch.nn.Linear
        and "forward" not in vars(module)
        and module.weight.device.type == "cpu"
        and module.weight.dtype == torch.float32
    )


def _lora_delta(module: Any) -> torch.Tensor | None:
    """Weight change of a plain PEFT LoRA linear's active adapters in eval mode; None for anything else."""
    base, get_delta = getattr(module, "base_layer", None), getattr(module, "get_delta_weight", None)
    if not (_plain_cpu_linear(base) and callable(get_delta) and "forward" not in vars(module)):
        return None
    if module.training or getattr(module, "merged", True) or getattr(module, "disable_adapters", True):
        return None
    active = [name for name in module.active_adapters if name in module.lora_A]
    if any(name in getattr(module, "lora_variant", {}) or module.lora_bias.get(name) for name in active):
        return None
    delta = torch.zeros_like(base.weight)
    for name in active:
        delta += get_delta(name).to(base.weight.dtype)
    return delta


def _packable(model: Any) -> list[tuple[Any, torch.Tensor, torch.Tensor | None]]:
    """``(module, weight, bias)`` of each linear to pack: plain linears, and LoRA linears with adapters folded in."""
    out, skipped = [], set()  # layers inside a folded LoRA layer, or inside one already packed by an outer call
    for module in model.modules():
        delta = _lora_delta(module)
        if delta is not None:
            base = module.base_layer
            out.append((module, base.weight.detach() + delta, base.bias))
        if delta is not None or "forward" in vars(module):
            skipped.update(id(m) for m in module.modules() if m is not module)
    for module in model.modules():
        if _plain_cpu_linear(module) and id(module) not in skipped:
            out.append((module, module.weight.detach(), module.bias))
    return out


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
"""Linear layers a decoder block calls one after another on the same input (attention's query, key and value
projections; the gated MLP's gate and up projections), by their attribute names in transformers' decoder families."""


def _version(tensor: torch.Tensor) -> int:
    """The tensor's in-place version counter; -2 for an inference tensor, which has none.

    Under ``torch.inference_mode`` (sentence-transformers' ``encode``) only the tensor's identity tells the siblings'
    input apart: a block that writes into its input between the sibling calls would need a version to be seen.
    No transformers decoder does, and outside inference mode the version catches it.
    """
    return -2 if tensor.is_inference() else tensor._version


class SharedProduct:
    """The forward of a group of linear layers: one packed product for siblings that read the same input.

    Why: in a decode step the key and value projections are products of a few dozen rows by a 576 x 192 weight
    (SmolLM2-135M), too small to run the GEMM kernel at its rate; one product over the stacked weights does the
    three (or gate and up: two) in one call. Whichever sibling is called first with an input computes the whole
    product; the others return their slice while the input is the same tensor, unmodified (same object, same
    version counter). Any other call recomputes, so a model that feeds its siblings different inputs still gets the
    right outputs, only without the saving (inference tensors carry no version counter: there the identity alone
    decides). The slices are views of the one output, split along its last dimension. A group of one is a plain
    packed linear.

    Inputs of more than ``max_rows`` rows (a prefill) skip the packed product: each member multiplies by its own
    weight with PyTorch's GEMM, which runs at the matmul rate there (None: the product takes every input).
    """

    def __init__(
        self,
        product: Product,
        members: list[tuple[torch.Tensor, torch.Tensor | None]],
        max_rows: int | None = PACKED_MAX_ROWS,
    ) -> None:
        self.product, self.members, self.max_rows = product, members, max_rows
        self.sizes = [weight.shape[0] for weight, _ in members]
        self.inputs: torch.Tensor | None = None
        self.version = -1
        self.outputs: tuple[torch.Tensor, ...] = ()

    def forward(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        if self.max_rows is not None and inputs.numel() > self.max_rows * inputs.shape[-1]:
            weight, bias = self.members[index]
            return torch.nn.functional.linear(inputs, weight, bias)
        if len(self.sizes) == 1:
            return self.product(inputs)
        version = _version(inputs)
        if inputs is not self.inputs or version != self.version:
            outputs = self.product(inputs).split(self.sizes, dim=-1)
            self.inputs, self.version, self.outputs = inputs, version, outputs
        output = self.outputs[index]
        if index == len(self.sizes) - 1:  # the last sibling in the models' order: let the input and output go
            self.inputs, self.outputs = None, ()
        return output


Linear = tuple[Any, torch.Tensor, torch.Tensor | None]


def linear_groups(model: Any) -> list[list[Linear]]:
    """The packable linears of ``model`` (see :func:`_packable`), siblings that share an input grouped together.

    A group of several is a :data:`SIBLINGS` set of one parent module whose weights read the same width and whose
    biases are all present or all absent; every other linear is a group of one.
    """
    linears = _packable(model)
    by_module = {id(module): (module, weight, bias) for module, weight, bias in linears}
    groups, grouped = [], set()
    for parent in model.modules():
        for names in SIBLINGS:
            members = [by_module.get(id(getattr(parent, name, None))) for name in names]
            if any(member is None or id(member[0]) in grouped for member in members):
                continue
            if len({member[1].shape[1] for member in members}) > 1:
                continue
            if len({member[2] is None for member in members}) > 1:
                continue
            groups.append(members)
            grouped.update(id(member[0]) for member in members)
    return groups + [[linear] for linear in linears if id(linear[0]) not in grouped]


def stacked(group: list[Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A group's weights (and biases) stacked into one."""
    weights = [weight for _, weight, _ in group]
    biases = [bias.detach() for _, _, bias in group if bias is not None]
    weight = weights[0] if len(group) == 1 else torch.cat(weights)
    bias = (biases[0] if len(group) == 1 else torch.cat(biases)) if biases else None
    return weight, bias


def install(group: list[Linear], product: Product, max_rows: int | None = PACKED_MAX_ROWS) -> None:
    """Route each member's ``forward`` to ``product`` (shared among siblings); :func:`restore` undoes it."""
    shared = SharedProduct(product, [(weight, bias) for _, weight, bias in group], max_rows)
    for index, (module, _, _) in enumerate(group):
        module.forward = partial(shared.forward, index)


def restore(groups: list[list[Linear]]) -> None:
    for group in groups:
        for module, _, _ in group:
            vars(module).pop("forward", None)


_KEPT: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], int, list[Product]]] = weakref.WeakKeyDictionary()
"""Per model, the packed products of its last call, with the signature of the weights and the rows packed for."""


def _signature(groups: list[list[Linear]], int8: bool) -> tuple[Any, ...] | None:
    """What the packed products depend on: the GEMM library (or int8) and each weight and bias (storage and
    in-place version counter: an optimiser step bumps it). None where that cannot be told: LoRA layers (their
    folded weight is new each call) and inference tensors (no version counter)."""
    signature: list[Any] = ["int8" if int8 else gemm_backend()]
    for group in groups:
        for module, weight, bias in group:
            if type(module) is not torch.nn.Linear:
                return None
            for tensor in (weight, bias):
                if tensor is not None and tensor.is_inference():
                    return None
                signature.append(None if tensor is None else (tensor.data_ptr(), tensor._version, tensor.shape))
    return tuple(signature)


def _products(model: Any, groups: list[list[Linear]], rows: int, int8: bool) -> list[Product]:
    """Each group's packed product: those of the model's last call while its weights are unchanged and they were
    packed for at least ``rows`` rows, else new ones.

    Why kept: packing SmolLM2-135M's weights takes 0.15-0.6 s (fresh memory's page faults included), a few per cent
    of encoding a batch of 64, paid again by every ``encode`` batch of the same model. Why the rows: both libraries
    pick their blocking for the rows packed for; a packing for more rows serves fewer at the same speed, one for
    fewer is slow (MKL, 57 rows by a 3072 x 576 weight: 0.96 ms packed for 2 rows, 0.57 ms packed for 64 or 256).
    The copy stays with the model until its weights change or the model is freed (SmolLM2-135M: about 540 MB);
    :func:`release_packed` frees it sooner. Training changes the weights every step, so there the products are made
    anew each call, as before.
    """
    signature = _signature(groups, int8)
    kept = _KEPT.get(model)
    if signature is not None and kept is not None and kept[0] == signature and kept[1] >= rows:
        return kept[2]
    _KEPT.pop(model, None)  # the stale copy goes before the new one is made: never two at once
    rows = max(rows, PACK_FOR_ROWS)
    if int8:
        products = [int8_product(*stacked(group)) for group in groups]
    else:
        products = [packed_product(*stacked(group), rows) for group in groups]
    if signature is not None:
        _KEPT[model] = (signature, rows, products)
    return products


def release_packed(model: Any) -> None:
    """Free the packed copy of ``model``'s weights kept since its last generation call (if any)."""
    _KEPT.pop(model, None)


_INT8: ContextVar[bool] = ContextVar("grace_int8_linears", default=False)


@contextmanager
def int8_linears(enabled: bool = True) -> Iterator[None]:
    """Within the block, generation calls run their linear layers on int8 weights (:mod:`.int8_linears`).

    A context variable rather than an argument: the generation paths (single pass, refilled decode, GRPO rollouts)
    all reach :func:`packed_linears`, and the switch is the caller's run-time choice, not part of their signatures.
    Refused where this torch build lacks the int8 GEMM.
    """
    if enabled and not int8_works():
        raise GraceUserError(
            "int8=True needs PyTorch's int8 CPU GEMM (torch._int_mm), missing from this torch build; use "
            "torch 2.4 or newer, or encode in fp32 (int8=False)."
        )
    token = _INT8.set(enabled)
    try:
        yield
    finally:
        _INT8.reset(token)


@contextmanager
def packed_linears(model: Any, rows: int) -> Iterator[None]:
    """Within the block, ``model``'s plain fp32 CPU linear layers run on weights packed for ``rows``-row inputs.

    Siblings that read the same input (:data:`SIBLINGS`) run as one product over their stacked weights. Nothing
    changes where the batch is smaller than :data:`PACK_MIN_ROWS`, the packed copy would exceed
    :data:`PACK_MAX_BYTES` or no packed GEMM runs in this torch build. The modules are restored on exit, also when
    the block raises. Inside an outer block, layers it already packed are left as they are (several generation
    calls share one packing). The packed copy is kept with the model for its next call (see :func:`_products`).

    Inside :func:`int8_linears` the layers run on int8 weights instead, at every batch size and for the prefill
    too (the int8 copy is a quarter of the fp32 one's size).
    """
    int8 = _INT8.get()
    with torch.no_grad():
        groups = linear_groups(model) if rows >= PACK_MIN_ROWS or int8 else []
    size = sum(weight.numel() * (1 if int8 else weight.element_size()) for group in groups for _, weight, _ in group)
    if not groups or size > PACK_MAX_BYTES or (not int8 and gemm_backend() is None):
        yield
        return
    with torch.no_grad():
        for group, product in zip(groups, _products(model, groups, rows, int8), strict=True):
            install(group, product, None if int8 else PACKED_MAX_ROWS)
    try:
        yield
    finally:
        restore(groups)
