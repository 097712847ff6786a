"""``learning_curve.png``: the reward per step (with a moving average) and the validation curve, for the model card.

The figure is drawn with matplotlib's object API on the non-interactive Agg canvas (``matplotlib.figure.Figure``),
never through ``pyplot``: no global figure state, no GUI backend, nothing left behind in a long-lived process.
matplotlib is imported only when a plot is drawn; without it (an install without the ``train`` extra's newer pins)
the run still saves its model and says on stderr that the plot was skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


logger = logging.getLogger(__name__)


LEARNING_CURVE_PNG = "learning_curve.png"


def reward_points(log_history: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, mean reward)`` for every logged training step (TRL logs the batch's mean reward as ``reward``)."""
    return [(int(entry["step"]), float(entry["reward"])) for entry in log_history if "reward" in entry]


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (shorter at the start, so the line starts at step one)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_learning_curve(
    rewards: list[tuple[int, float]], validation: list[dict[str, Any]], path: str | Path
) -> Path | None:
    """Write the PNG to ``path``; returns it, or None when there is nothing to draw or matplotlib is missing.

    Top panel: mean reward per step and its moving average (window: a tenth of the run, 1 to 25 steps). Bottom
    panel (only with a validation curve): the mean validation score per evaluation and each task's, on the same
    step axis.
    """
    if not rewards:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        logger.warning("matplotlib is not installed, so learning_curve.png is skipped")
        return None
    figure = Figure(figsize=(8, 6 if validation else 3.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2 if validation else 1, 1, sharex=True, squeeze=False)[:, 0]
    steps, values = zip(*rewards, strict=True)
    window = max(1, min(25, len(values) // 10))
    axes[0].plot(steps, values, ".", color="tab:blue", alpha=0.35, label="mean reward per step")
    axes[0].plot(steps, moving_average(list(values), window), color="tab:blue", label=f"moving average ({window})")
    axes[0].set_ylabel("reward")
    axes[0].legend(loc="best", fontsize="small")
    axes[0].grid(alpha=0.3)
    if validation:
        _plot_validation(axes[1], validation)
    axes[-1].set_xlabel("training step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def _plot_validation(axes: Any, validation: list[dict[str, Any]]) -> None:
    steps = [point["step"] for point in validation]
    tasks = sorted({name for point in validation for name in point["per_task"]})
    for name in tasks:
        scores = [point["per_task"].get(name, float("nan")) for point in validation]
        axes.plot(steps, scores, "--", marker=".", linewidth=1, alpha=0.7, label=name.removeprefix("GraceSuite"))
    axes.plot(steps, [point["mean"] for point in validation], "-o", color="black", label="mean")
    axes.set_ylabel("validation nDCG@10")
    axes.legend(loc="best", fontsize="small")
    axes.grid(alpha=0.3)
