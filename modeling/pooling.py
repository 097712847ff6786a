"""Hidden-state pooling: the one function that turns ``[prompt | rationale]`` into a GRACE vector.

The vector is the mean of one layer's hidden states over the pooled span (see ``spans.py``), L2-normalised. The
sentence-transformers chain computes the same thing as ``RationaleGenerator -> Pooling(mean) -> Normalize``; the
training reward calls :func:`embed_sequences` directly. Tests hold the two equal.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding, as ``generate`` uses them, so a padded row sees the positions it would
    see alone.

    >>> position_ids_from_mask(torch.tensor([[0, 0, 1, 1, 1]])).tolist()
    [[0, 0, 0, 1, 2]]
    """
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def _decoder(model: Any) -> Any:
    """The backbone without its LM head, when it has one: the head's ``(B, T, vocab)`` logits are never needed."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) and base is not model else model


def select_hidden_states(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int = -1
) -> torch.Tensor:
    """``(B, T, H)`` hidden states of ``layer`` (``-1``: the last layer, after the final norm).

    Only the last layer can be read from ``last_hidden_state``; any other layer asks for all of them.
    """
    decoder = _decoder(model)
    kwargs = dict(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask)
    )
    if layer == -1:
        return decoder(**kwargs, use_cache=False).last_hidden_state
    hidden = decoder(**kwargs, use_cache=False, output_hidden_states=True).hidden_states
    if not -len(hidden) <= layer < len(hidden):
        raise GraceUserError(f"layer={layer} is out of range for a backbone with {len(hidden)} hidden-state layers.")
    return hidden[layer]


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, H)`` mean of ``hidden`` ``(B, T, H)`` over the positions where ``mask`` ``(B, T)`` is 1."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def embed_sequences(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    span_mask: torch.Tensor,
    layer: int = -1,
) -> torch.Tensor:
    """L2-normalised ``(B, H)`` GRACE embeddings of full ``[prompt | rationale]`` sequences."""
    hidden = select_hidden_states(model, input_ids, attention_mask, layer)
    return F.normalize(masked_mean(hidden.float(), span_mask), p=2, dim=-1)
