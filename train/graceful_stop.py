"""Stop on SIGTERM/SIGINT at the end of the current step, with a checkpoint, so a killed run loses no finished step.

Clusters and users stop jobs with SIGTERM (or Ctrl-C). Without this, everything since the last ``save_steps``
checkpoint is lost. With it, the step in progress completes, a checkpoint is written, and the run exits; restarting
with ``--resume_from_checkpoint last`` continues from exactly that step. (A SIGKILL cannot be caught: then the run
resumes from the last periodic checkpoint.)
"""

from __future__ import annotations

import signal
from typing import Any

from transformers import TrainerCallback


class GracefulStop(TrainerCallback):
    """Turns the first SIGTERM/SIGINT into "save a checkpoint and stop after this step"; a second one is not caught."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = signals
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = signum
        for sig, handler in self._previous.items():  # a second signal behaves as usual
            signal.signal(sig, handler)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.requested is not None:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
