"""Decode-step attention on the CPU as two batched matrix products.

In a decode step each row brings one query per head against a few hundred cached keys. PyTorch's CPU SDPA runs
its flash kernel for that too, which is built for long query blocks: on SmolLM2's shapes (9 query heads over 3
key/value heads, 60-130 keys, 16-64 rows) it took 1.1-1.5 ms per layer where ``bmm`` -> softmax -> ``bmm`` over the
same numbers took 0.4-0.8 ms, about 10 % of a whole decode step at 40-64 rows. The query heads that share a key/value
head are stacked as the rows of one product (what transformers' ``pack_gqa`` does for SDPA), so the keys are neither
repeated nor copied: the slot cache's view goes into ``bmm`` as it is.

Within :func:`cpu_decode_attention` a model whose attention is ``"sdpa"`` runs under a registered implementation
that does this for single-token fp32 CPU queries with no extra attention features, and hands everything else
(prefill, other dtypes and devices, sliding windows, soft-capping, sinks, position biases, dropout) to transformers'
own SDPA function. The outputs agree with SDPA's to float rounding; the single-pass tests hold the whole decode
equal to the two-pass path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


IMPLEMENTATION = "grace_cpu_decode"
"""The name the decode attention is registered under in transformers' attention and mask interfaces."""

_OTHER_FEATURES = ("position_bias", "softcap", "sliding_window", "s_aux", "sinks")
"""Attention keywords that change the computation; any of them set sends the call to SDPA."""


def _sdpa(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(*args, **kwargs)


def _bmm_applies(
    query: torch.Tensor, kv_heads: int, mask: torch.Tensor | None, dropout: float, kwargs: dict[str, Any]
) -> bool:
    """One fp32 CPU query per row, whole groups of query heads per key/value head, a mask shared by all heads."""
    return (
        query.shape[2] == 1
        and query.device.type == "cpu"
        and query.dtype == torch.float32
        and query.shape[1] % kv_heads == 0
        and (mask is None or (mask.dim() == 4 and mask.shape[1] == 1))
        and not dropout
        and all(kwargs.get(name) is None for name in _OTHER_FEATURES)
    )


class _StepBias:
    """The additive attention bias of the last decode step's mask, shaped for the stacked products.

    Why: every layer of a step gets the very same mask tensor from transformers; turning it into a ``(B * KV,
    groups, T)`` bias (a fill and a copy) once per step instead of once per layer saves two operations per layer.
    Holding the mask itself keeps its identity from being reused by a later tensor.
    """

    def __init__(self) -> None:
        self.entry: tuple[torch.Tensor, int, int, torch.Tensor] | None = None  # one tuple: swapped whole (threads)

    def get(self, mask: torch.Tensor, kv_heads: int, groups: int) -> torch.Tensor:
        entry = self.entry
        if entry is not None and entry[0] is mask and entry[1:3] == (kv_heads, groups):
            return entry[3]
        bias = mask
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape).masked_fill_(~bias, float("-inf"))
        batch, length = bias.shape[0], bias.shape[-1]
        bias = bias.expand(batch, kv_heads, groups, length).reshape(batch * kv_heads, groups, length)
        self.entry = (mask, kv_heads, groups, bias)
        return bias


_STEP_BIAS = _StepBias()


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract: ``(B, H, Q, D)`` queries, ``(B, KV, T, D)`` keys and values,
    ``(B, Q, H, D)`` output. Single fp32 CPU queries take the ``bmm`` path; anything else is SDPA's."""
    batch, heads, queries, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    if not _bmm_applies(query, kv_heads, attention_mask, dropout, kwargs):
        options = {"dropout": dropout, "scaling": scaling, "is_causal": is_causal, **kwargs}
        return _sdpa(module, query, key, value, attention_mask, **options)
    groups = heads // kv_heads
    stacked = query.reshape(batch * kv_heads, groups, dim)  # the query heads of one key/value head as rows
    keys = key.reshape(batch * kv_heads, length, dim).transpose(1, 2)
    values = value.reshape(batch * kv_heads, length, dim)
    scale = scaling if scaling is not None else dim**-0.5
    if attention_mask is None:
        scores = torch.bmm(stacked, keys).mul_(scale)
    else:
        scores = torch.baddbmm(_STEP_BIAS.get(attention_mask, kv_heads, groups), stacked, keys, alpha=scale)
    output = torch.bmm(scores.softmax(dim=-1), values)  # (B * KV, groups, D), heads in the query's order
    return output.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, decode_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)  # the same masks SDPA gets


def _eligible(model: Any) -> bool:
    config = getattr(model, "config", None)
    parameter = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    return (
        getattr(config, "_attn_implementation", None) == "sdpa"
        and hasattr(model, "set_attn_implementation")
        and parameter is not None
        and parameter.device.type == "cpu"
        and parameter.dtype == torch.float32
    )


@contextmanager
def cpu_decode_attention(model: Any) -> Iterator[None]:
    """Within the block, an fp32 CPU ``model`` with SDPA attention runs decode steps through :func:`decode_attention`.

    The model's own setting is put back on exit, also when the block raises. Other models are untouched.
    """
    if not _eligible(model):
        yield
        return
    _register()
    model.set_attn_implementation(IMPLEMENTATION)
    try:
        yield
    finally:
        model.set_attn_implementation("sdpa")
