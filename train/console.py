"""What ``grace train`` shows on the terminal: one progress bar, and a summary table at the end.

Why: Transformers' ``ProgressCallback`` prints every logged metric dict under the bar (TRL logs ~30 keys per step),
and the dependencies emit deprecation warnings that a user of ``grace train`` can do nothing about. Together they
bury the three things a person watches: how far the run is, whether the reward rises, and the last held-out score.
Those go on the bar; every logged dict still goes to ``report_to`` backends, to ``trainer_state.json`` and, one
JSON object a line, to ``train_log.jsonl`` beside the checkpoints. The warning filter is installed by the command
line only (never on import, never in the test suite, where the warnings are worth seeing).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


LOG_FILE = "train_log.jsonl"
"""Every dict the trainer logs, one JSON object a line, in the checkpoints folder (appended across resumes)."""

QUIETED_MODULES = r"(transformers|trl|peft|accelerate|datasets|mteb|sentence_transformers|torch|huggingface_hub)(\.|$)"
"""Dependencies whose deprecation chatter is dropped from the ``grace train`` console."""


def quiet_dependency_warnings() -> None:
    """Drop ``FutureWarning`` / ``DeprecationWarning`` raised from inside the dependencies (console runs only).

    GRACE's own warnings (truncated texts, ignored settings) are ``UserWarning`` s and stay visible.
    """
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=QUIETED_MODULES)


class GraceProgress(TrainerCallback):
    """One tqdm bar over the steps, with the mean reward and the last held-out validation score as its postfix.

    Replaces Transformers' ``ProgressCallback`` (which writes each log dict below the bar); each log dict is appended
    to ``log_path`` instead. Only the main process draws and writes.
    """

    def __init__(self, log_path: str | Path) -> None:
        self.log_path = Path(log_path)
        self.bar: Any = None
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="grace train", dynamic_ncols=True)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")
        self.postfix.update(progress_fields(logs))
        if self.bar is not None and self.postfix:
            self.bar.set_postfix(self.postfix, refresh=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_fields(logs: dict[str, Any]) -> dict[str, str]:
    """The bar's postfix entries found in one log dict: mean reward and the held-out validation mean."""
    from .learning_curve import PREFIX

    shown = {"reward": logs.get("reward"), "heldout": logs.get(f"{PREFIX}mean")}
    return {name: f"{value:.3f}" for name, value in shown.items() if _is_number(value)}


def summary_table(summary: dict[str, Any]) -> str:
    """A plain-text table of a finished run: steps, time, rewards, and the held-out rows with their intervals."""
    lines = [
        f"steps {summary.get('steps')}, wall {_minutes(summary.get('wall_seconds'))}, "
        f"reward {_fmt(summary.get('first_reward'))} -> {_fmt(summary.get('last_reward'))}"
    ]
    rows = summary.get("heldout") or []
    if rows:
        lines.append(f"{'held-out test task':<34} {'base':>6} {'trained':>7} {'diff':>7}  95% interval")
        for row in rows:
            interval = f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            lines.append(
                f"{row['task']:<34} {_fmt(row['base_' + row['base_choice']]):>6} {_fmt(row['trained']):>7} "
                f"{_fmt(row['diff'], signed=True):>7}  {interval}"
            )
    elif summary.get("trained_score") is not None:
        lines.append(
            f"held-out {summary.get('metric')}: {_fmt(summary.get('base_score'))} -> {_fmt(summary['trained_score'])}"
        )
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: Any, signed: bool = False) -> str:
    if not _is_number(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _minutes(seconds: Any) -> str:
    return "-" if not _is_number(seconds) else f"{int(seconds) // 60} min {int(seconds) % 60:02d} s"
