"""Which tokens a GRACE embedding averages over.

The default span, ``input_and_rationale``, is the one the reference code trains with: the user text, the template
glue and the rationale up to and including its first end token. The instruction prefix is excluded (it is the same
for every text and would pull all vectors together), and so is anything generated after the first end token (padding
that ``generate`` writes for rows that finished early). Two other spans are options:

- ``rationale``: the rationale tokens only;
- ``input``: the text and the template glue with no generation at all (the paper's "base" row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch


Span = Literal["input_and_rationale", "rationale", "input"]
SPANS: tuple[str, ...] = ("input_and_rationale", "rationale", "input")


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


def rationale_mask(rationale_ids: torch.Tensor, end_ids: Sequence[int]) -> torch.Tensor:
    """``(B, G)`` mask that is 1 up to and including each row's first end token, 0 after it.

    A row with no end token (cut at ``max_new_tokens``) is all ones.

    >>> rationale_mask(torch.tensor([[5, 6, 2, 0], [7, 8, 9, 1]]), end_ids=[2]).tolist()
    [[1, 1, 1, 0], [1, 1, 1, 1]]
    """
    is_end = torch.isin(rationale_ids, torch.tensor(list(end_ids), device=rationale_ids.device)).long()
    ends_before = is_end.cumsum(dim=1) - is_end  # (B, G): end tokens strictly before each position
    return (ends_before == 0).long()


def check_span(span: object) -> None:
    """Refuse anything but one of :data:`SPANS`, naming the valid ones."""
    if span not in SPANS:
        raise GraceUserError(f"Invalid span: {span!r}. Valid spans are: {SPANS}.")


def pooled_span_mask(prompt_span_mask: torch.Tensor, completion_mask: torch.Tensor | None, span: str) -> torch.Tensor:
    """Mask over ``[prompt | rationale]`` of the tokens that are averaged, for one of :data:`SPANS`.

    Args:
        prompt_span_mask: ``(B, P)`` 1 on the text and template glue (see ``PromptBatch.span_mask``).
        completion_mask: ``(B, G)`` from :func:`rationale_mask`, or None for the ``input`` span.
        span: one of :data:`SPANS`.
    """
    check_span(span)
    if span == "input":
        return prompt_span_mask
    if completion_mask is None:
        raise ValueError(f"span={span!r} pools over a rationale, but no rationale was generated.")
    if span == "rationale":
        return torch.cat([torch.zeros_like(prompt_span_mask), completion_mask], dim=1)
    return torch.cat([prompt_span_mask, completion_mask], dim=1)  # input_and_rationale


def pooled_span_masks(
    prompt_span_mask: torch.Tensor, completion_mask: torch.Tensor, spans: Sequence[str]
) -> torch.Tensor:
    """:func:`pooled_span_mask` with a span per row (a role mode may embed some rows of a batch input-only).

    Rows whose span is ``input`` pool their prompt part only, whatever was generated for them; the mask always spans
    ``[prompt | rationale]``. With one span other than ``input`` for every row this is :func:`pooled_span_mask`.
    """
    if len(set(spans)) == 1 and spans[0] != "input":
        return pooled_span_mask(prompt_span_mask, completion_mask, spans[0])
    rows = []
    for i, span in enumerate(spans):
        if span == "input":
            rows.append(torch.cat([prompt_span_mask[i], torch.zeros_like(completion_mask[i])]))
        else:
            rows.append(pooled_span_mask(prompt_span_mask[i : i + 1], completion_mask[i : i + 1], span)[0])
    return torch.stack(rows)
