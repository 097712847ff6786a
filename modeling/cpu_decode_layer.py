"""A decode step through a Llama-family decoder layer in fewer operations and less Python, on the CPU.

A batch-64 decode step of SmolLM2-135M spent about a third of its time outside the GEMMs and the attention
products (``benchmarks/decode_profile.py``): some 45 small operations a layer on ``(rows, 576)`` tensors, each a few
microseconds of dispatch, and transformers' Python around them (keyword plumbing, decorators, the attention
registry lookup, a module call per sub-block). For a single-token step this forward does the same arithmetic with
fewer operations: the second residual add and the gated activation in place, the rotary embedding with one copy
fewer per tensor, the attention through :func:`~.cpu_decode_attention.decode_attention` directly. The
layer's own modules (norms, linear layers) are still called, so the packed linears and any hooks on them apply.

Only the layer classes whose forward this reproduces exactly (:data:`LAYERS`: pre-norm RMSNorm, rotary attention
with grouped key/value heads and no sliding window, SiLU-gated MLP) take it, and only for one-token fp32 CPU steps
with a cache; everything else (prefill, training, other models) runs the layer's own forward. The tests hold the
logits of whole decodes equal to transformers' to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch

from .cpu_decode_attention import IMPLEMENTATION, decode_attention


LAYERS = {
    "LlamaDecoderLayer": "LlamaRMSNorm",
    "MistralDecoderLayer": "MistralRMSNorm",
    "Qwen2DecoderLayer": "Qwen2RMSNorm",
}
"""Decoder layer classes (by name) whose decode step :func:`decode_step` reproduces, with their norm class."""


def _eligible(layer: Any) -> bool:
    attention, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    norm, config = LAYERS.get(type(layer).__name__), getattr(attention, "config", None)
    return (
        norm is not None
        and "forward" not in vars(layer)
        and type(layer.input_layernorm).__name__ == norm
        and type(layer.post_attention_layernorm).__name__ == norm
        and getattr(attention, "sliding_window", None) is None
        and getattr(config, "sliding_window", None) is None
        and getattr(config, "hidden_act", None) == "silu"
        and all(hasattr(mlp, name) for name in ("gate_proj", "up_proj", "down_proj"))
    )


def _rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``states * cos + rotate_half(states) * sin`` (transformers' rotary embedding) with one fewer copy."""
    half = states.shape[-1] // 2
    rotated = torch.empty_like(states)
    torch.neg(states[..., half:], out=rotated[..., :half])
    rotated[..., half:] = states[..., :half]
    return rotated.mul_(sin).addcmul_(states, cos)


def decode_step(
    layer: Any,
    original: Any,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    cache: Any = None,
    use_cache: bool | None = False,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """The layer's forward for one-token fp32 CPU steps; any other call goes to ``original`` unchanged."""
    arguments = dict(attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=use_cache)
    if (
        hidden_states.shape[1] != 1
        or cache is None
        or position_embeddings is None
        or layer.training
        or hidden_states.dtype != torch.float32
        or hidden_states.device.type != "cpu"
    ):
        return original(hidden_states, position_embeddings=position_embeddings, **arguments, **kwargs)
    attention, mlp = layer.self_attn, layer.mlp
    rows, dim = hidden_states.shape[0], attention.head_dim
    normed = layer.input_layernorm(hidden_states)
    query = attention.q_proj(normed).view(rows, 1, -1, dim).transpose(1, 2)
    key = attention.k_proj(normed).view(rows, 1, -1, dim).transpose(1, 2)
    value = attention.v_proj(normed).view(rows, 1, -1, dim).transpose(1, 2)
    cos, sin = (part.unsqueeze(1) for part in position_embeddings)
    query, key = _rotate(query, cos, sin), _rotate(key, cos, sin)
    key, value = cache.update(key, value, attention.layer_idx, kwargs=kwargs)
    output, _ = decode_attention(attention, query, key, value, attention_mask, scaling=attention.scaling, **kwargs)
    hidden_states = hidden_states + attention.o_proj(output.reshape(rows, 1, -1))
    normed = layer.post_attention_layernorm(hidden_states)
    gated = torch.nn.functional.silu(mlp.gate_proj(normed)).mul_(mlp.up_proj(normed))
    return hidden_states.add_(mlp.down_proj(gated))


@contextmanager
def lean_decode_layers(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s eligible decoder layers (:data:`LAYERS`) take :func:`decode_step`; restored
    on exit, also when the block raises. Only inside :func:`~.cpu_decode_attention.cpu_decode_attention` (the model's
    attention is the ``bmm`` decode attention that :func:`decode_step` calls directly); otherwise nothing changes."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    ours = getattr(getattr(model, "config", None), "_attn_implementation", None) == IMPLEMENTATION
    layers = [layer for layer in getattr(decoder, "layers", []) if _eligible(layer)] if ours else []
    for layer in layers:
        layer.forward = partial(decode_step, layer, layer.forward)
    try:
        yield
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)
