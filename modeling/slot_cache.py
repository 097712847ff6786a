"""A KV cache for the single-pass decode loop: preallocated, and finished rows leave without copying the rest.

transformers' ``DynamicCache`` grows each layer by ``torch.cat`` at every step (the whole cache is copied once
per generated token) and drops rows with an index select (the whole cache is copied again each time a rationale
ends). On a CPU both are memory traffic on the scale of the attention itself. ``SlotLayer`` allocates the
``(rows, heads, prompt + max_new_tokens, head_dim)`` buffer once, writes each step's keys and values in place, and
hands attention a view of the filled columns of the active rows, which are always the buffer's first rows: when
rows finish, :func:`compaction_order` moves only the surviving rows that sit behind the first finished ones into
their slots, so dropping a row costs one row's copy, not the batch's.

Only plain full-attention layers get slots; a backbone with sliding-window, chunked or linear-attention layers
keeps transformers' own cache (same results, the copies stay).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class SlotLayer(DynamicLayer):
    """One layer's keys and values in a preallocated ``(rows, heads, capacity, head_dim)`` buffer.

    The active rows are ``buffer[:rows]`` and the filled columns ``buffer[..., :length, :]``; ``update`` returns that
    view, so attention reads exactly what ``DynamicLayer`` would hold, without a copy.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity, self.rows, self.length = capacity, 0, 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.is_initialized = key_states.device, True

    def _allocate(self, rows: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.key_buffer = key_states.new_empty((rows, key_states.shape[1], self.capacity, key_states.shape[3]))
        self.value_buffer = value_states.new_empty((rows, value_states.shape[1], self.capacity, value_states.shape[3]))

    def _expose(self, rows: int) -> None:
        """Point ``keys``/``values`` (what attention and transformers read) at the active rows' filled columns."""
        self.rows = rows
        self.keys = self.key_buffer[:rows, :, : self.length]
        self.values = self.value_buffer[:rows, :, : self.length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows, new = key_states.shape[0], key_states.shape[-2]
        if self.key_buffer is None:
            self._allocate(rows, key_states, value_states)
        if self.length + new > self.capacity:
            raise RuntimeError(f"SlotLayer holds {self.capacity} positions; {self.length + new} were asked for.")
        if self.length and rows != self.rows:
            raise RuntimeError(f"SlotLayer has {self.rows} active rows, the step brought {rows}.")
        self.key_buffer[:rows, :, self.length : self.length + new] = key_states
        self.value_buffer[:rows, :, self.length : self.length + new] = value_states
        self.length += new
        self._expose(rows)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Give every row a copy of the (single) row computed so far: the shared-prefix prefill's fan-out."""
        if not self.length:
            return
        if self.rows != 1:
            raise RuntimeError("SlotLayer repeats a one-row cache only (the shared prefix).")
        keys, values = self.key_buffer[:1, :, : self.length], self.value_buffer[:1, :, : self.length]
        self._allocate(repeats, keys, values)
        self.key_buffer[:, :, : self.length] = keys
        self.value_buffer[:, :, : self.length] = values
        self._expose(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (new row ``i`` = old row ``indices[i]``), copying only the rows that move."""
        if not self.length:
            return
        targets = torch.arange(indices.numel(), device=indices.device)
        moved = (indices != targets).nonzero().squeeze(1)
        if moved.numel():
            sources = indices[moved]  # the gather on the right is materialised before the write: overlaps are safe
            self.key_buffer[moved, :, : self.length] = self.key_buffer[sources, :, : self.length]
            self.value_buffer[moved, :, : self.length] = self.value_buffer[sources, :, : self.length]
        self._expose(indices.numel())


def compaction_order(finished: torch.Tensor) -> torch.Tensor:
    """Which old row each surviving row comes from, moving as few rows as possible.

    Survivors already in the first ``survivors`` slots stay; the ones behind fill the finished slots in front.

    >>> compaction_order(torch.tensor([False, True, False, True, False])).tolist()
    [0, 4, 2]
    """
    kept = (~finished).nonzero().squeeze(1)
    count = kept.numel()
    order = torch.arange(count, device=finished.device)
    holes = finished[:count].nonzero().squeeze(1)
    order[holes] = kept[kept >= count]
    return order


def decode_cache(config: Any, capacity: int) -> DynamicCache:
    """A cache for ``capacity`` positions: slot layers if every layer is plain full attention, else transformers'."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [SlotLayer(capacity) for _ in cache.layers]
    return cache
