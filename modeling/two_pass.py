"""Generate, then one forward: the GRACE encoding on public APIs only, for folders loaded without this library.

A saved GRACE folder carries this file so that ``SentenceTransformer(folder, trust_remote_code=True)`` works where
``grace_st`` is not installed, and keeps working on later transformers releases: it uses ``generate`` and a plain
forward with ``output_hidden_states``, nothing private. With the library installed, the module runs the library's
single pass instead (``modeling/single_pass.py``: one generation gives rationale and hidden states, with the CPU
kernels), which is faster and gives the same rationales and vectors (``tests/test_single_pass.py`` holds the two
equal, this file being the reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .generation import GenerationSettings, generate_rationales
from .pooling import select_hidden_states
from .spans import rationale_mask


@dataclass
class GeneratedBatch:
    """Rationales and the hidden states of one layer over ``[prompt | rationale]``.

    Attributes:
        rationale_ids: ``(B, G)`` generated ids, right-padded with the pad id after each row's first end token.
        hidden: ``(B, P + G, H)`` hidden states of the pooled layer. Positions after a row's first end token are
            not pooled (the single pass leaves them zero; this path computes them under the mask); padding positions
            hold whatever the masked forward gave them.
        logprobs: ``(B, G)`` log-probability of each generated token under the temperature-scaled distribution it
            was drawn from (before top-p, the distribution TRL's loss recomputes), 0 after a row's end; only when
            asked for (training rollouts, single pass only), else None.
    """

    rationale_ids: torch.Tensor
    hidden: torch.Tensor
    logprobs: torch.Tensor | None = None


@torch.no_grad()
def generate_then_embed(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    end_ids: list[int],
    pad_token_id: int,
    layer: int = -1,
) -> GeneratedBatch:
    """``generate`` the rationales, then run the backbone without its LM head over ``[prompt | rationale]``
    (everything after each row's first end token masked out) and keep layer ``layer``'s hidden states."""
    rationale_ids = generate_rationales(model, input_ids, attention_mask, settings, end_ids, pad_token_id)
    mask = torch.cat([attention_mask, rationale_mask(rationale_ids, end_ids)], dim=1)
    hidden = select_hidden_states(model, torch.cat([input_ids, rationale_ids], dim=1), mask, layer)
    return GeneratedBatch(rationale_ids=rationale_ids, hidden=hidden)
