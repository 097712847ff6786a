"""One corpus over several devices or processes on one machine, through sentence-transformers' multi-process pool.

GRACE spends its time generating, one text's rationale after another per batch, so a machine with several GPUs (or
many CPU cores) encodes a corpus that many times faster when each device runs its own copy of the model. This
uses sentence-transformers' own machinery (``start_multi_process_pool``: one spawned process per device, a task
queue, results returned in order); nothing here schedules work itself. Each worker runs ``_inference`` on its
share of a chunk, so vectors are those of one process. Only the main process reads the input and writes the output
and the encoding cache, so sharing one cache needs no coordination beyond SQLite's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from sentence_transformers import SentenceTransformer

from .errors import GraceUserError


def check_devices(devices: Sequence[str]) -> list[str]:
    """The device list, each one checked now (a typo or a missing GPU is named here, not in a worker)."""
    if isinstance(devices, str) or not devices:
        raise GraceUserError(
            f"devices must be a non-empty list of torch devices, e.g. ['cuda:0', 'cuda:1'] or ['cpu', 'cpu'], got "
            f"{devices!r}."
        )
    checked = []
    for device in devices:
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise GraceUserError(f"'{device}' is not a torch device. Use e.g. cpu, cuda:0 or mps.") from exc
        if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
            raise GraceUserError(
                f"'{device}' is not available: this machine has {torch.cuda.device_count()} CUDA device(s). "
                "Use cuda:0 ... cuda:N-1, or cpu."
            )
        checked.append(str(device))
    return checked


def start_pool(model: SentenceTransformer, devices: Sequence[str]) -> dict[str, Any]:
    """Start one worker process per device (the model is moved to the CPU and shared with them)."""
    return model.start_multi_process_pool(check_devices(devices))


@contextmanager
def encoding_pool(model: SentenceTransformer, devices: Sequence[str] | None) -> Iterator[dict[str, Any] | None]:
    """A pool over ``devices`` for the block (stopped after it, even on failure); ``None``: no pool, one process."""
    if devices is None:
        yield None
        return
    pool = start_pool(model, devices)
    try:
        yield pool
    finally:
        model.stop_multi_process_pool(pool)
