"""Wall time of each training step, from a ``TrainerCallback`` (no trainer method is wrapped).

The rollout function times its own generation (``grace/seconds/generation``, logged by the reward, which logs its own
time as ``grace/seconds/reward``); this callback adds the whole optimizer step (generation, reward, log-probabilities,
backward and optimizer), so the share of generation in a step is visible in the logs and in
``benchmarks/grpo_step_profile.py``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    """Times every step; the mean since the last log is added to that log as ``grace/seconds/step``.

    ``seconds`` keeps every step's time for callers that read it directly (the benchmark).
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._pending: list[float] = []
        self._start: float | None = None

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._start is not None:
            elapsed = time.perf_counter() - self._start
            self.seconds.append(elapsed)
            self._pending.append(elapsed)
            self._start = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not self._pending or logs is None:
            return
        value = statistics.mean(self._pending)
        self._pending.clear()
        logs["grace/seconds/step"] = value  # what reporters (wandb, trackio, ...) receive
        if state.log_history:  # the trainer stored a copy of ``logs`` just before calling back
            state.log_history[-1]["grace/seconds/step"] = value
