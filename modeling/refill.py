"""Continuous batching for greedy encoding: rows that finish are refilled with the next texts, so steps stay full.

A decode step has a part every row shares (streaming the weights, dispatch, the LM head's setup) and a part per
row: on the AVX2 machine a batch-64 step measured about 37-55 ms shared plus about 2 ms a row
(``benchmarks/decode_profile.py``). Decoding a fixed batch, rows drop out as their rationales end (on WordNet texts
at 64 new tokens a batch-64 step ran 43 rows on average), so the later steps pay the shared part for a shrinking
batch. Given more texts than rows (the corpus path hands a whole chunk to one call), this
loop keeps up to ``rows`` rationales in flight: when enough rows have finished, the next texts (longest first) are
prefilled as a group of their own (:func:`~.single_pass.prefill`; the instruction prefix every text shares is run
once per call and its cache copied into each group) and merged
into the running batch's :class:`~.slot_cache.SlotLayer` cache, right-aligned at its current last column.

Each row keeps its own attention-mask row over the cache's columns and its own positions, so it attends to its own
prompt and rationale only and sees the positions it would see alone: the vectors are those of a batch of one, to
float rounding, and the greedy rationales the same. Columns no active row attends to any more are dropped from
the front. Only greedy decoding is refilled: sampling must draw what ``generate`` draws for the same batch, which
refilling would change; it keeps :func:`~.batching.generate_packed`.
"""

from __future__ import annotations

from typing import Any

import torch

from .batching import generate_packed
from .generation import GenerationSettings
from .single_pass import (
    DecoderOutputs,
    cpu_kernels,
    forward_options,
    generate_with_hidden_states,
    greedy_tokens,
    prefill,
    prefill_prefix,
    shared_prefix_length,
)
from .slot_cache import SlotLayer, compaction_order, decode_cache
from .two_pass import GeneratedBatch


REFILL_FRACTION = 8
"""Refill once at least ``rows // REFILL_FRACTION`` rows are free: one prefill call per group, not per row."""

PREFILL_CALL_TOKENS = 32
"""What one more prefill call costs, in prompt tokens of prefill work (its dispatch, attention set-up and cache
merge): the price :func:`prefill_buckets` weighs against the padding a split saves. On SmolLM2-135M, 2 threads,
the 128 texts of ``encode_speed.py`` at b=64 took 2.83 s of prefill with 32 and 2.86 s with 96 (fewer, larger
calls): a wide optimum."""


def prefill_buckets(lengths: list[int], call_tokens: int = PREFILL_CALL_TOKENS) -> list[int]:
    """Where to split prompts sorted longest first into prefill calls: the start of each call's run of rows.

    A prefill pads every row to its longest prompt; on WordNet texts a batch of 64 padded to its longest held 34 %
    real tokens. Splitting the sorted rows into runs, each padded to its own first (longest) row, costs one call
    each; the split minimises padded tokens plus ``call_tokens`` per call (exact, by dynamic programming over the
    run boundaries: O(n^2) for n rows).

    >>> prefill_buckets([60, 58, 20, 19, 18, 5], call_tokens=10)
    [0, 2, 5]
    >>> prefill_buckets([9, 9, 8, 8], call_tokens=10)
    [0]
    """
    if any(a < b for a, b in zip(lengths, lengths[1:], strict=False)):
        raise ValueError("prefill_buckets takes lengths sorted longest first.")
    count = len(lengths)
    best, start = [0.0] + [float("inf")] * count, [0] * (count + 1)  # best[j]: cost of rows [0, j)
    for end in range(1, count + 1):
        for first in range(end):
            cost = best[first] + (end - first) * lengths[first] + call_tokens
            if cost < best[end]:
                best[end], start[end] = cost, first
    starts, end = [], count
    while end:
        starts.append(start[end])
        end = start[end]
    return starts[::-1]


def refill_rows(rows: int, widest: int, max_new_tokens: int, token_budget: int) -> int:
    """Rows in flight: ``rows``, or fewer where the budget of KV-cache slots (rows x (prompt + new tokens)) says so.

    >>> refill_rows(64, widest=100, max_new_tokens=156, token_budget=16384)
    64
    >>> refill_rows(64, widest=100, max_new_tokens=412, token_budget=16384)
    32
    """
    return max(1, min(rows, token_budget // (widest + max_new_tokens)))


@torch.no_grad()
def generate_refilled(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    end_ids: list[int],
    pad_token_id: int,
    layer: int = -1,
    rows: int = 64,
    token_budget: int = 16384,
) -> GeneratedBatch:
    """Greedy rationales and ``layer``'s hidden states of a left-padded batch, at most ``rows`` decoded at a time.

    The output has :func:`~.batching.generate_packed`'s layout (``rationale_ids`` ``(B, G)`` right-padded,
    ``hidden`` ``(B, P + G, H)`` with each prompt right-aligned at column ``P``). Where refilling does not apply
    (sampling, a cache without slot layers, no more texts than rows) the batch goes to ``generate_packed``.
    """
    steps, widest = settings.max_new_tokens, int(attention_mask.sum(dim=1).max())
    rows = refill_rows(rows, widest, steps, token_budget)
    capacity = widest + steps + max(8, steps // 2)  # the slack: how often the filled columns move to the front
    cache = decode_cache(model.config, capacity=capacity, reserve_rows=rows)
    slots = all(isinstance(layer_cache, SlotLayer) for layer_cache in cache.layers)
    if settings.do_sample or not slots:

        def run(ids: torch.Tensor, mask: torch.Tensor) -> GeneratedBatch:
            return generate_with_hidden_states(model, ids, mask, settings, end_ids, pad_token_id, layer)

        return generate_packed(run, input_ids, attention_mask, steps, token_budget, pad_token_id)
    with DecoderOutputs(model) as captured, cpu_kernels(model, rows):
        loop = _RefilledDecode(model, captured, input_ids, attention_mask, steps, end_ids, pad_token_id, layer)
        return loop.run(cache, rows)


class _RefilledDecode:
    """The state of one refilled decode: the queue of texts, the running rows and the outputs filled so far.

    Running rows (``active`` holds their indices in the batch) share the cache's columns; ``mask`` says which of
    them each row attends to, ``position`` the position its next token takes, ``made`` how many tokens it has.
    """

    def __init__(
        self,
        model: Any,
        captured: DecoderOutputs,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        steps: int,
        end_ids: list[int],
        pad_token_id: int,
        layer: int,
    ) -> None:
        self.model, self.captured, self.layer, self.steps = model, captured, layer, steps
        self.input_ids, self.attention_mask = input_ids, attention_mask
        self.common = forward_options(model, layer)
        batch, device = input_ids.shape[0], input_ids.device
        self.lengths = attention_mask.sum(dim=1).tolist()
        self.queue = sorted(range(batch), key=lambda i: (-self.lengths[i], i))  # longest first
        self.ends = torch.tensor(end_ids, device=device)
        self.generated = torch.full((batch, steps), pad_token_id, dtype=torch.long, device=device)
        self.prompt_hidden: torch.Tensor | None = None
        self.gen_hidden: torch.Tensor | None = None
        self.active = torch.zeros(0, dtype=torch.long, device=device)
        self.made = torch.zeros(0, dtype=torch.long, device=device)
        self.position = torch.zeros(0, dtype=torch.long, device=device)
        self.mask = attention_mask.new_zeros((0, 0))
        self.logits: torch.Tensor | None = None
        self.used = 0
        self.prefix = self._prefix()

    def run(self, cache: Any, rows: int) -> GeneratedBatch:
        threshold = max(1, rows // REFILL_FRACTION)
        while self.queue or self.active.numel():
            free = rows - self.active.numel()
            if self.queue and (free >= threshold or not self.active.numel()):
                group, self.queue = self.queue[:free], self.queue[free:]
                shared = self.prefix[0] if self.prefix is not None else 0
                starts = prefill_buckets([self.lengths[i] - shared for i in group])
                for first, stop in zip(starts, [*starts[1:], len(group)], strict=True):
                    self._admit(cache, group[first:stop])
            self._step(cache)
        hidden = torch.cat([self.prompt_hidden, self.gen_hidden[:, : self.used]], dim=1)
        return GeneratedBatch(rationale_ids=self.generated[:, : self.used], hidden=hidden)

    def _prefix(self) -> tuple[int, torch.Tensor, Any] | None:
        """The prefix every text of the batch starts with (the instruction), run once for all groups: its length,
        hidden states and one-row cache; None where the texts share none."""
        shared = shared_prefix_length(self.input_ids, self.attention_mask)
        if not shared:
            return None
        first = self.input_ids.shape[1] - self.lengths[0]
        own = decode_cache(self.model.config, capacity=shared)
        hidden = prefill_prefix(self.captured, self.input_ids[:1, first : first + shared], own, self.layer)
        return shared, hidden, own

    def _admit(self, cache: Any, group: list[int]) -> None:
        """Prefill ``group`` (rows of the batch) on a cache of its own and merge it into the running batch.

        With no row running (the first group, or after a full drain) the group is prefilled straight into the
        running batch's cache: no second cache of a full batch's prompts exists at the same time (peak memory).
        """
        width = max(self.lengths[i] for i in group)
        chosen = torch.tensor(group, device=self.input_ids.device)
        ids, mask = self.input_ids[chosen, -width:], self.attention_mask[chosen, -width:]
        running = bool(self.active.numel())
        if not running:
            for layer_cache in cache.layers:
                layer_cache.clear()
        own = decode_cache(self.model.config, capacity=width) if running else cache
        prefix = None
        if self.prefix is not None:
            shared, prefix_hidden, prefix_cache = self.prefix
            for layer_cache, prefix_layer in zip(own.layers, prefix_cache.layers, strict=True):
                layer_cache.append_rows(prefix_layer)
            prefix = (shared, prefix_hidden)
        logits, hidden, own_mask, positions = prefill(
            self.model, self.captured, ids, mask, own, self.common, self.layer, prefix
        )
        if self.prompt_hidden is None:
            batch, size = self.input_ids.shape[0], hidden.shape[-1]
            self.prompt_hidden = hidden.new_zeros((batch, self.input_ids.shape[1], size))
            self.gen_hidden = hidden.new_zeros((batch, self.steps, size))
        self.prompt_hidden[chosen, -width:] = hidden
        if not running:
            self.mask, self.logits = own_mask, logits
        else:
            span = self.mask.shape[1]  # longest first: never narrower than ``width``
            for layer_cache, group_cache in zip(cache.layers, own.layers, strict=True):
                layer_cache.append_rows(group_cache)
            own_mask = torch.cat([own_mask.new_zeros((len(group), span - width)), own_mask.to(self.mask.dtype)], dim=1)
            self.mask, self.logits = torch.cat([self.mask, own_mask]), torch.cat([self.logits, logits])
        self.active = torch.cat([self.active, chosen])
        self.made = torch.cat([self.made, torch.zeros_like(chosen)])
        self.position = torch.cat([self.position, positions[:, -1] + 1])

    def _step(self, cache: Any) -> None:
        """Choose each running row's next token, run it through the model, then let the finished rows go."""
        tokens = greedy_tokens(self.logits)
        self.generated[self.active, self.made] = tokens
        finished = torch.isin(tokens, self.ends) | (self.made + 1 >= self.steps)
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        inputs = {"input_ids": tokens[:, None], "attention_mask": self.mask, "position_ids": self.position[:, None]}
        if bool(finished.all()) and not self.queue:  # no next token to choose: the decoder alone gives the states
            self.captured.decoder(**inputs, cache=cache, use_cache=True, output_hidden_states=self.layer != -1)
        else:
            self.logits = self.model(**inputs, cache=cache, **self.common).logits[:, -1].to(dtype=torch.float32)
        self.gen_hidden[self.active, self.made] = self.captured.layer(self.layer)[:, -1]
        self.made, self.position = self.made + 1, self.position + 1
        self.used = max(self.used, int(self.made.max()))
        if bool(finished.any()):
            keep = compaction_order(finished)
            self.active, self.made, self.position = self.active[keep], self.made[keep], self.position[keep]
            self.mask, self.logits = self.mask[keep], self.logits[keep]
            cache.batch_select_indices(keep)
            unused = int(self.mask.any(dim=0).int().argmax()) if keep.numel() else 0
            if unused:
                for layer_cache in cache.layers:
                    layer_cache.drop_leading(unused)
                self.mask = self.mask[:, unused:]
