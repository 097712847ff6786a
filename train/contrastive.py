"""The contrastive (InfoNCE) term that can be added to GRACE's policy-gradient loss, with gradient.

GRACE's reward reaches the policy only through the log-probabilities of the rationale tokens: the hidden states that
make the vector are never pushed directly. On a small budget that signal is weak (see the README's "Does training
help?"). This term pushes them directly: each rollout's pooled embedding (document text + its sampled rationale) is
pulled towards its example's query anchor and away from every other query anchor and every negative anchor of the
step, exactly the pairs the reward scores. The vectors are the saved encoder's: same pooled span (the text, the
template glue and the rationale up to and including its first end token, never the instruction prefix), the last
layer after the final norm, mean-pooled and L2-normalised.

The rollouts' hidden states are taken from TRL's own policy forward (the one that computes the log-probabilities),
through :class:`HiddenStateTap`, so the document side costs no extra forward. The anchors (query, negative) need one
more forward over ``2 x examples`` sequences, with gradient, so that the query side is trained too.

The candidates of each rollout are the query anchors of the examples in the same micro-batch on the same process
(with several processes there is no gather with gradient: each process contrasts its own examples), plus the
no-grad embedding of every example's negative anchor. Everything but :class:`HiddenStateTap` is a pure function of
tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import GraceUserTypeError
from ..modeling.pooling import masked_mean


def prompt_span(prompt_mask: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """``(N, P)`` pooled part of left-padded prompts: every real token after the instruction prefix.

    The prompts are ``[pad | prefix | text | template glue]`` (``build_prompt_batch``), so the span is the attention
    mask with each row's first ``prefix_len`` real tokens cleared.

    >>> prompt_span(torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]), 2).tolist()
    [[0, 0, 0, 1], [0, 0, 1, 1]]
    """
    mask = prompt_mask.long()
    real_before = mask.cumsum(dim=1) - mask  # real tokens strictly before each position
    return mask * (real_before >= prefix_len).long()


def pooled(hidden: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    """L2-normalised mean of ``hidden`` ``(N, T, H)`` over ``span`` ``(N, T)``; what ``embed_sequences`` returns."""
    return F.normalize(masked_mean(hidden.float(), span), p=2, dim=-1)


def pad_sequences(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(N, T)`` ids and attention mask of token sequences of different lengths."""
    width = max(1, max(len(row) for row in rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def info_nce(
    rollouts: torch.Tensor,
    rollout_example: torch.Tensor,
    queries: torch.Tensor,
    negatives: torch.Tensor | None,
    temperature: float,
) -> torch.Tensor:
    """Mean InfoNCE loss of each rollout against the step's query anchors (its own is the positive).

    Args:
        rollouts: ``(N, H)`` L2-normalised embeddings of the rollouts (document + sampled rationale).
        rollout_example: ``(N,)`` index into ``queries`` of each rollout's own example.
        queries: ``(E, H)`` L2-normalised query-anchor embeddings, one per example of the step.
        negatives: ``(E, H)`` L2-normalised negative-anchor embeddings (hard negatives for every rollout), or None.
        temperature: the softmax temperature (0.05 is the usual contrastive fine-tuning value).

    >>> q = torch.eye(2); r = torch.eye(2)
    >>> round(info_nce(r, torch.tensor([0, 1]), q, None, 1.0).item(), 4)  # log(1 + e^-1)
    0.3133
    """
    candidates = queries if negatives is None else torch.cat([queries, negatives], dim=0)
    logits = rollouts @ candidates.T / temperature
    return F.cross_entropy(logits, rollout_example)


def decoder_module(model: Any) -> torch.nn.Module:
    """The transformer body (whose output is the last layer after the final norm) under PEFT/accelerate wrappers."""
    inner = model
    for _ in range(4):  # DDP .module, PEFT .get_base_model(), then the causal LM's .get_decoder()
        inner = getattr(inner, "module", inner)
        get_base = getattr(inner, "get_base_model", None)
        inner = get_base() if callable(get_base) else inner
    get_decoder = getattr(inner, "get_decoder", None)
    decoder = get_decoder() if callable(get_decoder) else None
    if not isinstance(decoder, torch.nn.Module):
        raise GraceUserTypeError(
            f"contrastive_weight > 0 needs a causal LM with get_decoder() (a transformers model); got "
            f"{type(inner).__name__}. Set contrastive_weight: 0 for this backbone."
        )
    return decoder


class HiddenStateTap:
    """Records the decoder's last hidden states, with their graph, during the forwards inside ``capture()``.

    TRL computes the rollouts' log-probabilities with one forward of the policy (in row chunks); the hidden states of
    that same forward are what the contrastive term pools, so the document side needs no second forward.
    """

    def __init__(self, model: Any) -> None:
        self.decoder = decoder_module(model)
        self.outputs: list[torch.Tensor] = []

    def _record(self, _module: Any, _args: Any, output: Any) -> None:
        hidden = getattr(output, "last_hidden_state", None)
        self.outputs.append(hidden if hidden is not None else output[0])

    @contextmanager
    def capture(self) -> Iterator[list[torch.Tensor]]:
        self.outputs = []
        handle = self.decoder.register_forward_hook(self._record)
        try:
            yield self.outputs
        finally:
            handle.remove()

    def hidden(self) -> torch.Tensor:
        """``(N, T, H)`` the recorded chunks, concatenated in row order."""
        if not self.outputs:
            raise RuntimeError("No forward ran inside HiddenStateTap.capture(); nothing to pool.")
        return torch.cat(self.outputs, dim=0)
