"""What a training run reports: the reward curve, ``train_summary.json`` and the card's training record."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..published_files import public_name
from .config import GraceConfig


# GraceConfig fields shown in the model card: GRACE's own plus the TRL settings that decide the result.
_CARD_FIELDS = (
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "temperature",
    "max_completion_length",
    "beta",
    "loss_type",
    "scale_rewards",
    "epsilon",
)


def reward_curve(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-step mean rewards from the trainer's log, summarised (first, last, min, max, mean of the last quarter)."""
    rewards = [entry["reward"] for entry in log_history if "reward" in entry]
    if not rewards:
        return {"steps": 0, "per_step": []}
    quarter = rewards[-max(1, len(rewards) // 4) :]
    return {
        "steps": len(rewards),
        "first": rewards[0],
        "last": rewards[-1],
        "min": min(rewards),
        "max": max(rewards),
        "last_quarter_mean": sum(quarter) / len(quarter),
        "per_step": rewards,
    }


def training_summary(
    base: dict[str, Any] | None, trained: dict[str, Any] | None, curve: dict[str, Any], wall_seconds: float
) -> dict[str, Any]:
    """The contents of ``train_summary.json``."""
    return {
        "base_score": None if base is None else base["score"],
        "trained_score": None if trained is None else trained["score"],
        "metric": None if trained is None else f"{trained['task']} {trained['metric']}",
        "first_reward": curve.get("first"),
        "last_reward": curve.get("last"),
        "wall_seconds": round(wall_seconds, 1),
        "steps": curve["steps"],
        "reward_per_step": curve["per_step"],
    }


def card_training_record(
    args: GraceConfig,
    dataset_name: str,
    backbone: str,
    base: dict[str, Any] | None,
    trained: dict[str, Any] | None,
    curve: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """``grace_training`` for the model card template (published: local paths appear by their last component)."""
    grace_fields = {f.name for f in fields(GraceConfig)} - {f.name for f in fields(GraceConfig.__mro__[1])}
    config = {name: getattr(args, name) for name in sorted(grace_fields) if name != "instruction"}
    config.update({name: getattr(args, name) for name in _CARD_FIELDS})
    config["lr_scheduler_type"] = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    record: dict[str, Any] = {
        "objective": args.objective,
        "reward_variant": args.reward_variant,
        "num_generations": args.num_generations,
        "dataset": public_name(dataset_name),
        "backbone": public_name(backbone),
        "config": config,
        "rewards": curve
        if curve["steps"]
        else {**curve, "first": 0.0, "last": 0.0, "min": 0.0, "max": 0.0, "last_quarter_mean": 0.0},
        "wall_seconds": summary["wall_seconds"],
    }
    if summary.get("heldout"):
        record["heldout_table"] = summary["heldout"]  # the held-out suite's per-task rows (train/heldout.py)
    if base is not None and trained is not None:
        record["heldout"] = {
            "task": trained["task"],
            "metric": trained["metric"],
            "base_score": base["score"],
            "trained_score": trained["score"],
        }
    return record
