"""Opt-in int8 products for the CPU generation: faster encoding for a measured, small loss of quality.

Each linear layer's weight is quantised to int8 per output channel once (symmetric: ``scale = max |w| / 127`` of
the row, ``q = round(w / scale)``), and each input row to int8 on the fly with a scale of its own (``max |x| / 127``
of the row: per-token dynamic quantisation). ``torch._int_mm`` multiplies the int8 matrices into exact int32 sums
(oneDNN's VNNI/AMX int8 kernels on x86), and the two scales bring them back to fp32. Measured on SmolLM2-135M's
3072 x 576 and 576 x 1536 products at 57-64 rows, 2 threads (Intel Xeon, AVX-512 VNNI): 2-2.7x faster than MKL's
packed fp32 GEMM, quantisation of the inputs included; at 8 rows about the same.

Why a scale per row rather than PyTorch's dynamic int8 linear: that one quantises the whole input with one scale,
so a row's output would depend on the other rows of its batch, and GRACE's vectors must not change with the batch
they are encoded in. Here each row's sums are exact integers scaled by its own numbers: batch-size invariance
holds to the bit. (PyTorch's weight-only int8 GEMM, ``torch._weight_int8pack_mm``, keeps fp32 activations but ran
at 7 GFLOP/s on the CPU, 30x slower than fp32.) Nothing outside PyTorch is needed: no quantisation package.

Off by default; ``RationaleGenerator(int8=True)``, ``model[0].int8 = True`` or ``grace encode --int8`` turn it on.
The whole generation (prefill and decode, the LM head included) then runs on int8 products, so rationales can
differ from the fp32 model's; ``benchmarks/int8_quality.py`` measures the speed and the held-out quality against
fp32 side by side.
"""

from __future__ import annotations

from functools import cache, partial

import torch

from .cpu_gemm import Product


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(int8 weight, fp32 scale per output channel)`` with ``weight ~ q * scale[:, None]``; all-zero rows get 1."""
    scale = weight.abs().amax(dim=1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return quantized, scale.to(torch.float32)


def _forward(
    quantized_t: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, inputs: torch.Tensor
) -> torch.Tensor:
    flat = inputs.reshape(-1, inputs.shape[-1])
    row_scale = flat.abs().amax(dim=1, keepdim=True).div_(127).clamp_(min=torch.finfo(torch.float32).tiny)
    rows = torch.round(flat / row_scale).to(torch.int8)
    output = torch._int_mm(rows, quantized_t).float().mul_(row_scale).mul_(scale)
    if bias is not None:
        output += bias
    return output.reshape(*inputs.shape[:-1], quantized_t.shape[1])


def int8_product(weight: torch.Tensor, bias: torch.Tensor | None) -> Product:
    """``inputs @ weight.T + bias`` as an int8 product (the weight by :func:`quantize`, the inputs row by row)."""
    quantized, scale = quantize(weight)
    return partial(_forward, quantized.t(), scale, None if bias is None else bias.detach().float())


@cache
def int8_works() -> bool:
    """Whether this torch build runs ``torch._int_mm`` on the CPU (a private op: probed, not assumed)."""
    try:
        weight, inputs = torch.eye(32)[:16], torch.arange(-32.0, 32.0).reshape(2, 32)
        return bool(torch.allclose(int8_product(weight, None)(inputs), inputs[:, :16], atol=0.25))  # half a step
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
