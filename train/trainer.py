"""``GraceGRPOTrainer``: TRL's GRPO trainer with GRACE's contrastive reward over rationales."""

from __future__ import annotations

import time
from typing import Any

from datasets import Dataset
from trl import GRPOTrainer

from .config import GraceConfig
from .policy_embedding import PolicyEmbedder
from .reward_function import GraceReward


class GraceGRPOTrainer(GRPOTrainer):
    """GRPO where the reward is GRACE's contrastive similarity of the policy's own rationale embeddings.

    What this changes in TRL's ``GRPOTrainer``, and why:

    1. **The reward.** ``reward_funcs`` is always GRACE's :class:`~grace_st.train.reward_function.GraceReward`; it
       cannot be passed in. It needs the trainer (to write anchor rationales and embed with the *current* policy, and
       to gather across processes), so it is bound to it after construction.
    2. **Prompt tokenisation** (``_tokenize_prompts``). Rollout prompts are built by the encoder's own
       ``build_prompt_batch`` (chat template split around the text, the text cut to ``max_input_tokens`` before
       templating), not by ``apply_chat_template`` on the whole conversation. Tokenising the text apart can differ
       from tokenising the rendered string at its edges, and cutting long texts must keep the template; either
       difference would train the policy on token ids the saved model never sees.
    3. **Timing** (``_generate`` and ``training_step`` are wrapped, not changed): rollout generation time and total
       micro-step time are logged as ``grace/seconds/*`` next to the reward's anchor and embedding times, so the
       cost of GRACE's reward over plain GRPO is visible in the logs and in ``benchmarks/grpo_step_profile.py``.

    Everything else — sampling, group-mean advantages (``scale_rewards="none"`` by default), the clipped loss,
    PEFT, vLLM, checkpoints, resumption and logging — is TRL's, configured through :class:`GraceConfig`.
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
        if "reward_funcs" in kwargs:
            raise TypeError("GraceGRPOTrainer computes GRACE's reward itself; do not pass reward_funcs.")
        needed = ["prompt", "query", "negative"] if args.objective == "supervised" else ["prompt"]
        missing = [name for name in needed if name not in train_dataset.column_names]
        if missing:
            raise ValueError(
                f"train_dataset lacks columns {missing} for objective={args.objective!r}; prepare it with "
                "grace_st.train.prepare_dataset (it maps positive/text to 'prompt')."
            )
        reward = GraceReward()
        super().__init__(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            peft_config=peft_config,
            callbacks=callbacks,
            **kwargs,
        )
        self.embedder = PolicyEmbedder(
            self._tokenizer,
            prompts={"query": args.prompt_for("query"), "document": args.prompt_for("document")},
            max_input_tokens=args.max_input_tokens,
            span=args.pooled_span,
            layer=args.pooled_layer,
            batch_size=max(args.per_device_train_batch_size, args.num_generations),
        )
        reward.bind(self)

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict]:
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError(
                "GRACE prompts are raw texts (the 'prompt' column holds the positive or the text); got "
                f"{type(prompts[0]).__name__}. Do not apply a chat template yourself: the trainer applies it."
            )
        return self.embedder.prompt_ids(prompts, "document"), None, {}

    def _generate(self, prompts: list) -> Any:
        start = time.perf_counter()
        out = super()._generate(prompts)
        self._log_seconds("rollout_generation", time.perf_counter() - start)
        return out

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
        start = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._log_seconds("training_step", time.perf_counter() - start)
        return loss

    def _log_seconds(self, phase: str, seconds: float) -> None:
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][f"grace/seconds/{phase}"].append(seconds)
