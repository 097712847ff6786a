"""A KV cache for the single-pass decode loop: preallocated, and finished rows leave without copying the rest.

transformers' ``DynamicCache`` grows each layer by ``torch.cat`` at every step (the whole cache is copied once
per generated token) and drops rows with an index select (the whole cache is copied again each time a rationale
ends). On a CPU both are memory traffic on the scale of the attention itself. ``SlotLayer`` allocates the
``(rows, heads, prompt + max_new_tokens, head_dim)`` buffer once, writes each step's keys and values in place, and
hands attention a view of the filled columns of the active rows, which are always the buffer's first rows: when
rows finish, :func:`compaction_order` moves only the surviving rows that sit behind the first finished ones into
their slots, so dropping a row costs one row's copy, not the batch's.

For continuous batching (``refill.py``) the visible columns start at ``start`` rather than 0: rows of a newly
prefilled group join the running ones right-aligned (:meth:`SlotLayer.append_rows`), columns that no active row
attends to any more are dropped from the front (:meth:`SlotLayer.drop_leading`), and the filled columns move back
to the buffer's front only when the buffer's end is reached.

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

    The active rows are ``buffer[:rows]`` and the filled columns ``buffer[..., start:length, :]``; ``update`` returns
    that view, so attention reads exactly what ``DynamicLayer`` would hold, without a copy. ``reserve_rows``: rows
    the buffer is allocated for at least (a continuously refilled batch grows after its first allocation).
    """

    def __init__(self, capacity: int, reserve_rows: int = 0) -> None:
        super().__init__()
        self.capacity, self.reserve_rows, self.rows, self.start, self.length = capacity, reserve_rows, 0, 0, 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device, self.is_initialized = key_states.device, True

    def _allocate(self, rows: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        rows = max(rows, self.reserve_rows)
        self.key_buffer = key_states.new_empty((rows, key_states.shape[1], self.capacity, key_states.shape[3]))
        self.value_buffer = value_states.new_empty((rows, value_states.shape[1], self.capacity, value_states.shape[3]))

    def _expose(self, rows: int) -> None:
        """Point ``keys``/``values`` (what attention and transformers read) at the active rows' filled columns."""
        self.rows = rows
        self.keys = self.key_buffer[:rows, :, self.start : self.length]
        self.values = self.value_buffer[:rows, :, self.start : self.length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        rows, new = key_states.shape[0], key_states.shape[-2]
        if self.key_buffer is None:
            self._allocate(rows, key_states, value_states)
        if self.length + new > self.capacity and self.start:
            self._move_to_front()
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
        return self.length - self.start

    def _move_to_front(self) -> None:
        """Copy the visible columns to the buffer's front (once per many steps of a refilled batch)."""
        span, rows = self.length - self.start, self.rows
        for buffer in (self.key_buffer, self.value_buffer):
            buffer[:rows, :, :span] = buffer[:rows, :, self.start : self.length].clone()
        self.start, self.length = 0, span
        self._expose(rows)

    def clear(self) -> None:
        """Hold no rows and no columns; the buffer stays allocated for the next rows."""
        self.rows = self.start = self.length = 0
        if self.key_buffer is not None:
            self._expose(0)

    def drop_leading(self, columns: int) -> None:
        """Stop showing the first ``columns`` visible columns: no active row attends to them any more."""
        self.start += columns
        self._expose(self.rows)

    def append_rows(self, other: SlotLayer) -> None:
        """Add ``other``'s active rows behind this layer's, right-aligned: their last column lands on this one's.

        Their columns in front of ``other``'s are zeroed (the caller masks them). An empty layer takes ``other``'s
        width; otherwise ``other`` may be no wider than the visible columns (groups join longest first, so a running
        row always spans at least a newcomer's prompt).
        """
        new, width = other.rows, other.length - other.start
        if self.key_buffer is None:
            self.lazy_initialization(other.keys, other.values)
            self._allocate(new, other.keys, other.values)
        if not self.rows:
            self.start, self.length = 0, width
        span = self.length - self.start
        if width > span or self.rows + new > self.key_buffer.shape[0]:
            raise RuntimeError(f"SlotLayer cannot take {new} rows of {width} columns ({self.rows} rows of {span}).")
        rows = slice(self.rows, self.rows + new)
        for buffer, source in ((self.key_buffer, other.keys), (self.value_buffer, other.values)):
            buffer[rows, :, self.start : self.length - width] = 0
            buffer[rows, :, self.length - width : self.length] = source
        self._expose(self.rows + new)

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Give every row a copy of the (single) row computed so far: the shared-prefix prefill's fan-out."""
        if not self.length:
            return
        if self.rows != 1:
            raise RuntimeError("SlotLayer repeats a one-row cache only (the shared prefix).")
        visible = slice(self.start, self.length)
        keys, values = self.key_buffer[:1, :, visible].clone(), self.value_buffer[:1, :, visible].clone()
        if self.key_buffer.shape[0] < repeats:  # a buffer with room (a refilled batch's) is reused: no second copy
            self._allocate(repeats, keys, values)
        self.key_buffer[:repeats, :, visible] = keys
        self.value_buffer[:repeats, :, visible] = values
        self._expose(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (new row ``i`` = old row ``indices[i]``), copying only the rows that move."""
        if not self.length:
            return
        targets = torch.arange(indices.numel(), device=indices.device)
        moved = (indices != targets).nonzero().squeeze(1)
        if moved.numel():
            sources = indices[moved]  # the gather on the right is materialised before the write: overlaps are safe
            visible = slice(self.start, self.length)
            self.key_buffer[moved, :, visible] = self.key_buffer[sources, :, visible]
            self.value_buffer[moved, :, visible] = self.value_buffer[sources, :, visible]
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


def decode_cache(config: Any, capacity: int, reserve_rows: int = 0) -> DynamicCache:
    """A cache for ``capacity`` positions: slot layers if every layer is plain full attention, else transformers'."""
    cache = DynamicCache(config=config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [SlotLayer(capacity, reserve_rows) for _ in cache.layers]
    return cache
