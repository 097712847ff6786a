"""Stop training when a wall-clock budget is spent, so objectives can be compared on equal time, not equal steps.

Objectives differ in cost per step (a contrastive term adds a forward, longer rationales cost more decoding), so a
fair comparison, and a CPU recipe that must finish within an hour on any machine kind, needs a budget in minutes.
The step in progress finishes, a checkpoint is saved, and the run goes on to scoring and saving as after
``max_steps``. A resumed run counts the training time its log already holds (TRL's per-step ``step_time``).
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback


class TimeBudget(TrainerCallback):
    """Ends training at the first step end after ``minutes`` of training time (``None``: no budget)."""

    def __init__(self, minutes: float | None) -> None:
        self.seconds = None if minutes is None else 60.0 * minutes
        self.spent_before = 0.0
        self.started = 0.0
        self.exhausted = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.monotonic()
        self.spent_before = sum(float(entry.get("step_time", 0.0)) for entry in state.log_history)

    def spent(self) -> float:
        """Training seconds so far, this process's and those of the runs it resumes."""
        return self.spent_before + time.monotonic() - self.started

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.seconds is not None and self.spent() >= self.seconds:
            self.exhausted = True
            control.should_save = True
            control.should_training_stop = True
        return control
