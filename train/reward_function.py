"""GRACE's reward as a TRL reward function: a pure function of the columns the rollout function returned.

The rollouts and anchors, and their embeddings, come from ``rollouts.py`` as per-row columns (``grace_embedding``,
``grace_query_embedding``, ...). Nothing here generates, runs the model or knows the trainer. TRL calls a reward
function with this process's rows only, and GRACE's reward needs every example of the step (the other examples are
in-batch negatives), so the columns are gathered across processes here; every process calls its reward function once
per generation batch, so the gather is symmetric. ``rewards.py`` then scores the whole step, and this process's slice
is returned (TRL gathers the rewards again afterwards, as for any reward function).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from accelerate.utils import gather

from .rewards import RewardTerms, RewardWeights, supervised_reward, unsupervised_reward


ANCHOR_COLUMNS = {
    "supervised": ("grace_query_embedding", "grace_negative_embedding"),
    "unsupervised": ("grace_anchor_embedding",),
}


class GraceReward:
    """``reward(prompts, completions, completion_ids, **columns) -> list[float]`` from the ``grace_*`` columns.

    Args:
        objective: ``"supervised"`` or ``"unsupervised"``.
        weights: the reward constants.
        variant: ``"reference"`` or ``"rollout"`` (supervised only; see ``rewards.py``).
    """

    __name__ = "grace"  # TRL logs rewards as rewards/<__name__>/mean

    def __init__(self, objective: str, weights: RewardWeights, variant: str = "reference") -> None:
        self.objective, self.weights, self.variant = objective, weights, variant

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]],
        *,
        grace_example: list[int],
        grace_embedding: list[torch.Tensor],
        grace_truncated: list[bool],
        log_metric: Any = None,
        grace_seconds: list[dict[str, float]] | None = None,
        **columns: Any,
    ) -> list[float]:
        start = time.perf_counter()
        missing = [name for name in ANCHOR_COLUMNS[self.objective] if name not in columns]
        if missing:
            raise ValueError(f"GraceReward({self.objective!r}) needs columns {missing} from GraceRollouts.")
        local = torch.stack(grace_embedding).float()
        device = local.device
        examples = torch.tensor(grace_example, device=device)
        cut = torch.tensor(grace_truncated, device=device, dtype=torch.long)
        anchors = [torch.stack(columns[name]).float() for name in ANCHOR_COLUMNS[self.objective]]
        rollouts, examples, cut, *anchors = gather([local, examples, cut, *anchors])  # every process calls this
        batch = int(examples.max()) + 1
        k = rollouts.shape[0] // batch
        if not torch.equal(examples, torch.arange(batch, device=device).repeat_interleave(k)):
            raise ValueError(
                "grace_example must number the examples 0..B-1 in process order, each on K consecutive rows "
                f"(TRL's layout); got {examples.tolist()}."
            )
        grouped, truncated = rollouts.view(batch, k, -1), cut.bool().view(batch, k)
        firsts = [anchor[::k] for anchor in anchors]  # one anchor per example
        if self.objective == "supervised":
            terms = supervised_reward(firsts[0], grouped, firsts[1], truncated, self.weights, self.variant)
        else:
            terms = unsupervised_reward(firsts[0], grouped, truncated, self.weights)
        if log_metric is not None:
            _log(log_metric, terms, truncated, batch, grace_seconds, time.perf_counter() - start)
        offset = grace_example[0] * k
        return terms.reward.flatten()[offset : offset + len(grace_example)].tolist()


def _log(
    log_metric: Any,
    terms: RewardTerms,
    truncated: torch.Tensor,
    batch: int,
    seconds: list[dict[str, float]] | None,
    reward_seconds: float,
) -> None:
    """Each term's mean (before /tau), so a user sees what moves, and where the step's generation time went."""
    for name in ("positive", "negative", "consistency", "hard_negative"):
        log_metric(f"grace/{name}", getattr(terms, name).mean().item())
    log_metric("grace/truncated_fraction", truncated.float().mean().item())
    log_metric("grace/examples_in_reward", float(batch))  # all processes' examples: the in-batch negatives
    for phase, value in (seconds[0] if seconds else {}).items():
        log_metric(f"grace/seconds/{phase}", value)
    log_metric("grace/seconds/reward", reward_seconds)
