"""The model's linear layers through oneDNN, on weights packed once per generation call, while decoding on a CPU.

A decode step multiplies a few dozen rows by every weight matrix of the model: short products whose cost on a CPU
is dominated by how the weight is streamed, not by arithmetic. PyTorch's default CPU GEMM repacks each weight on
every call. oneDNN's linear on a weight reordered once into its own blocked layout (what inductor's CPU freezing
does) measured, on SmolLM2-135M's shapes with 2 threads, 15-35 % faster for the 30 layers' 576x1536 and 1536x576
products at 4 to 64 rows, and 30 % faster than the previous oneDNN path for the 49k x 576 LM head; at prefill
sizes (thousands of rows) both are the same. Packing all 134M weights takes about 0.35 s, so it is done per call
only for batches of at least :data:`PACK_MIN_ROWS` rows (a one-row call would not earn it back), and only while the
packed copy stays under :data:`PACK_MAX_BYTES` (the copy lives as long as the call: big models on a CPU keep one
set of weights).

Only plain fp32 CPU ``nn.Linear`` modules with no replaced ``forward`` are packed (accelerate's hooks keep theirs),
and only where this torch build can run the ops. A PEFT LoRA linear in eval mode (training rollouts run the policy
with its adapter active) is packed with its adapters folded in, ``W + B A * scaling`` (PEFT's own
``get_delta_weight``), computed per call and never written back: the same outputs to float rounding, without the
adapter's extra small products and Python on every step; adapter variants (DoRA, ...) and LoRA biases keep PEFT's
forward. Outputs agree with ``F.linear`` to float
rounding (a different summation order); the single-pass tests hold the whole encode equal to the two-pass path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, partial
from typing import Any

import torch


PACK_MIN_ROWS = 2
"""Smallest batch whose decode saves more than the one-off packing costs."""

PACK_MAX_BYTES = 2 * 1024**3
"""Largest packed copy of the linear weights held during a call (SmolLM2-135M: about 0.5 GB)."""


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


@cache
def _packing_works() -> bool:
    """Whether this torch build has oneDNN and its packed-weight linear (private ops, so probed, not assumed)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        weight, inputs = torch.ones(3, 2), torch.ones(1, 2)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)
        return bool(
            torch.equal(torch.ops.mkldnn._linear_pointwise(inputs, packed, None, "none", [], ""), inputs @ weight.T)
        )
    except (AttributeError, RuntimeError):
        return False


def _packed_forward(weight: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(inputs, weight, bias, "none", [], "")


@contextmanager
def onednn_linears(model: Any, rows: int) -> Iterator[None]:
    """Within the block, ``model``'s plain fp32 CPU linear layers run on weights packed for ``rows``-row inputs.

    Nothing changes where the batch is smaller than :data:`PACK_MIN_ROWS`, the packed copy would exceed
    :data:`PACK_MAX_BYTES` or oneDNN is missing. The modules are restored on exit, also when the block raises. Inside
    an outer block, layers it already packed are left as they are (several generation calls share one packing).
    """
    with torch.no_grad():
        linears = _packable(model) if rows >= PACK_MIN_ROWS else []
    size = sum(weight.numel() * weight.element_size() for _, weight, _ in linears)
    if not linears or size > PACK_MAX_BYTES or not _packing_works():
        yield
        return
    with torch.no_grad():  # the weights may be trained between calls: packed per call, never kept
        for module, weight, bias in linears:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
            module.forward = partial(_packed_forward, packed, None if bias is None else bias.detach())
    try:
        yield
    finally:
        for module, _, _ in linears:
            vars(module).pop("forward", None)
