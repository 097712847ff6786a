"""The LM head through oneDNN while decoding on a CPU.

Each decode step multiplies a few dozen hidden states by the whole vocabulary matrix (49k x 576 for SmolLM2, 151k x
896 for Qwen2.5-0.5B): a short, very wide product that is limited by memory traffic. PyTorch's default CPU GEMM
repacks that matrix on every call; oneDNN's linear, on a weight converted to its own layout once per generation,
does not, and measured about 1.7x faster on this shape at 1 to 64 rows (``benchmarks/encode_speed.py`` shows the
effect on the whole encode). The logits agree to float rounding (greedy rationales were identical on the
benchmark's 128 texts).

Used only where it is the same computation: a plain fp32 ``nn.Linear`` head on the CPU, with no replaced
``forward`` (accelerate and PEFT wrap modules that way), and oneDNN available. Anything else runs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def _plain_cpu_linear(head: Any) -> bool:
    return (
        type(head) is torch.nn.Linear
        and "forward" not in vars(head)
        and head.weight.device.type == "cpu"
        and head.weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    )


@contextmanager
def onednn_lm_head(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s output embedding runs through oneDNN when that is the same computation."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not _plain_cpu_linear(head):
        yield
        return
    weight = head.weight.detach().to_mkldnn()  # converted once per generation: the weights may be trained between
    bias = None if head.bias is None else head.bias.detach().to_mkldnn()

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.mkldnn_linear(hidden.contiguous().to_mkldnn(), weight, bias).to_dense()

    head.forward = forward
    try:
        yield
    finally:
        del head.forward
