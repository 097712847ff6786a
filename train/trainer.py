"""``GraceGRPOTrainer``: TRL's GRPO trainer with GRACE's rollouts and contrastive reward over rationales."""

from __future__ import annotations

import warnings
from typing import Any

from datasets import Dataset
from trl import GRPOTrainer

from .config import GraceConfig
from .data import prompt_fields
from .reward_function import GraceReward
from .rollouts import GraceRollouts
from .step_timer import StepTimer


class GraceGRPOTrainer(GRPOTrainer):
    """GRPO where the reward is GRACE's contrastive similarity of the policy's own rationale embeddings.

    What this changes in TRL's ``GRPOTrainer``, and why, through public constructor arguments only:

    1. **Rollouts** (``rollout_func``): :class:`~grace_st.train.rollouts.GraceRollouts` writes the K rollouts per
       example and one anchor per query and negative (or a second generation of the text) with the encoder's single
       pass, and returns each one's embedding with it. Prompt ids, template and truncation are the encoder's, so the
       policy trains on the token ids the saved model encodes with. It cannot be passed in.
    2. **The reward** (``reward_funcs``): :class:`~grace_st.train.reward_function.GraceReward`, a pure function of
       the columns the rollouts return; it cannot be passed in.
    3. **Timing** (a callback): :class:`~grace_st.train.step_timer.StepTimer` logs each step's wall time next to the
       rollout function's phase times.

    No TRL private method is overridden. Everything else — group-mean advantages (``scale_rewards="none"`` by
    default), the clipped loss, PEFT, vLLM, checkpoints (with the random stream the rollouts sample from), resumption
    and logging — is TRL's, configured through :class:`GraceConfig`.
    """

    def __init__(
        self,
        model: Any,
        args: GraceConfig,
        train_dataset: Dataset,
        processing_class: Any | None = None,
        peft_config: Any | None = None,
        callbacks: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, GraceConfig):
            raise TypeError(f"args must be a GraceConfig, got {type(args).__name__}. Build one with GraceConfig(...).")
        for name in ("reward_funcs", "rollout_func", "tools", "environment_factory"):
            if name in kwargs:
                raise TypeError(f"GraceGRPOTrainer sets {name} itself (GRACE's rollouts and reward); do not pass it.")
        _check_prompts(train_dataset, args.objective)
        self.step_timer = StepTimer()
        with warnings.catch_warnings():  # rollout_func is TRL's "experimental" seam, used on purpose (trl is pinned)
            warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
            super().__init__(
                model=model,
                reward_funcs=[GraceReward(args.objective, args.grace_reward_weights(), args.reward_variant)],
                args=args,
                train_dataset=train_dataset,
                processing_class=processing_class,
                peft_config=peft_config,
                callbacks=[*(callbacks or []), self.step_timer],
                rollout_func=GraceRollouts(args),
                **kwargs,
            )


def _check_prompts(dataset: Dataset, objective: str) -> None:
    """Fail at construction, not at the first step, when the data was not prepared for ``objective``."""
    fields = prompt_fields(dataset[0]["prompt"]) if "prompt" in dataset.column_names and len(dataset) else {}
    needed = ["text", "query", "negative"] if objective == "supervised" else ["text"]
    missing = [name for name in needed if name not in fields]
    if missing:
        raise ValueError(
            f"train_dataset's prompts lack {missing} for objective={objective!r}; prepare it with "
            "grace_st.train.prepare_dataset (it puts positive/text, query and negative into the 'prompt' column)."
        )
