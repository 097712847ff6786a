"""Length-sorted, token-budget packing of a prompt batch before generation.

A batch of left-padded prompts costs ``rows x (widest prompt + max_new_tokens)`` KV-cache slots and as many
token-steps of compute, whatever the shorter prompts need. Sorting the rows by prompt length and cutting them into
groups whose cost fits a token budget bounds the working set (the KV cache) and the padding waste; each group is
trimmed to its own widest prompt. The groups' outputs are put back in the original row order with the same layout
the unpacked batch would have, so nothing downstream can tell, and no vector depends on which group a text landed in
(each row is decoded from its own prompt only; the batch-invariance tests hold this).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .two_pass import GeneratedBatch


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


DEFAULT_TOKEN_BUDGET = 16384
"""KV-cache slots (rows x (prompt width + max_new_tokens)) one generation group may use."""


def pack_by_token_budget(lengths: Sequence[int], max_new_tokens: int, token_budget: int) -> list[list[int]]:
    """Row indices in groups, longest prompts first, each group within ``token_budget``.

    A group's cost is its row count times (its longest prompt + ``max_new_tokens``); a row that alone exceeds the
    budget gets a group of its own rather than an error (the budget bounds batching, not what can be encoded).

    >>> pack_by_token_budget([3, 9, 4, 8], max_new_tokens=2, token_budget=22)
    [[1, 3], [2, 0]]
    """
    if not isinstance(token_budget, int) or token_budget < 1:
        raise GraceUserError(f"token_budget must be a positive integer, got {token_budget!r}.")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for index in order:
        if groups:
            widest = lengths[groups[-1][0]]  # rows arrive longest first
            if (len(groups[-1]) + 1) * (widest + max_new_tokens) <= token_budget:
                groups[-1].append(index)
                continue
        groups.append([index])
    return groups


GenerateFn = Callable[[torch.Tensor, torch.Tensor], GeneratedBatch]


def generate_packed(
    generate: GenerateFn,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    token_budget: int,
    pad_token_id: int,
) -> GeneratedBatch:
    """Run ``generate(ids, mask)`` on budget-packed groups of a left-padded batch; reassemble in row order.

    The result has the unpacked layout: ``rationale_ids`` ``(B, G)`` right-padded with ``pad_token_id`` to the
    longest rationale, ``hidden`` ``(B, P + G, H)`` with each prompt right-aligned at column ``P``.
    """
    lengths = attention_mask.sum(dim=1).tolist()
    groups = pack_by_token_budget(lengths, max_new_tokens, token_budget)
    if len(groups) == 1 and max(lengths) == input_ids.shape[1]:
        return generate(input_ids, attention_mask)
    width = input_ids.shape[1]
    results = []
    for group in groups:
        rows = torch.tensor(group, device=input_ids.device)
        trimmed = width - int(max(lengths[i] for i in group))
        results.append((rows, generate(input_ids[rows, trimmed:], attention_mask[rows, trimmed:])))
    steps = max(result.rationale_ids.shape[1] for _, result in results)
    first = results[0][1].hidden
    ids = input_ids.new_full((input_ids.shape[0], steps), pad_token_id)
    hidden = first.new_zeros((input_ids.shape[0], width + steps, first.shape[-1]))
    for rows, result in results:
        prompt_width = result.hidden.shape[1] - result.rationale_ids.shape[1]
        generated = result.rationale_ids.shape[1]
        ids[rows, :generated] = result.rationale_ids
        hidden[rows, width - prompt_width : width + generated] = result.hidden
    return GeneratedBatch(rationale_ids=ids, hidden=hidden)
