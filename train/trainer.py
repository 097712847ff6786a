"""``GraceGRPOTrainer``: TRL's GRPO trainer with GRACE's contrastive reward over rationales."""

from __future__ import annotations

import time
from typing import Any

import torch
from datasets import Dataset
from trl import GRPOTrainer

from .config import GraceConfig
from .contrastive import HiddenStateTap, anchor_span, info_nce, pad_sequences, pooled, prompt_span
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

    4. **An optional contrastive term** (``contrastive_weight > 0``; ``_generate_and_score_completions`` and
       ``compute_loss`` are extended, TRL's own computation runs unchanged inside them). The generation batch gains
       the anchor sequences of each row's example (``grace_*`` tensors, shuffled and split with the rest by TRL);
       ``compute_loss`` records the last hidden states of TRL's own policy forward, pools each rollout the way the
       encoder does, embeds the query/negative anchors with gradient, and adds
       ``contrastive_weight * InfoNCE / gradient_accumulation_steps`` to TRL's loss (scaled by
       ``policy_gradient_weight``). With ``contrastive_weight: 0`` both methods return TRL's results untouched.

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
        self._grace_reward = reward

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

    # --- the contrastive term (see contrastive.py) ---------------------------------------------------------------

    def _generate_and_score_completions(self, generation_batch: Any) -> dict[str, Any]:
        output = super()._generate_and_score_completions(generation_batch)
        if self.args.contrastive_weight > 0 and self.model.training:
            output.update(self._anchor_tensors(generation_batch))
        return output

    def _anchor_tensors(self, generation_batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Per-row anchor sequences as padded tensors, so TRL shuffles and splits them with the rollouts."""
        rows = generation_batch[0] if generation_batch and "grace_example" in generation_batch[0] else None
        columns = (
            {key: [row[key] for row in generation_batch] for key in rows if key.startswith("grace_")}
            if rows
            else self._grace_reward.last_rows
        )
        pad = self.embedder.pad_token_id
        roles = {"query": "query", "negative": "document"} if self.args.objective == "supervised" else {}
        roles = roles or {"anchor": "document"}
        out = {"grace_example": torch.tensor(columns["grace_example"], dtype=torch.long)}
        for name, role in roles.items():
            ids, mask = pad_sequences(columns[f"grace_{name}_ids"], pad)
            prefix = len(self.embedder.templates[role].prefix_ids)
            span = anchor_span(mask, columns[f"grace_{name}_prompt_len"], prefix, self.args.pooled_span)
            out.update({f"grace_{name}_ids": ids, f"grace_{name}_mask": mask, f"grace_{name}_span": span})
        return out

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        weight = self.args.contrastive_weight
        if weight == 0 or "grace_example" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        tap = HiddenStateTap(model)
        with tap.capture():
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        start = time.perf_counter()
        prefix = len(self.embedder.templates["document"].prefix_ids)
        prompt_part = prompt_span(inputs["prompt_mask"], prefix)
        if self.args.pooled_span == "rationale":
            prompt_part = torch.zeros_like(prompt_part)
        rollouts = pooled(tap.hidden(), torch.cat([prompt_part, inputs["completion_mask"]], dim=1))
        examples, own = torch.unique(inputs["grace_example"], return_inverse=True)
        first = torch.stack([(inputs["grace_example"] == e).nonzero()[0, 0] for e in examples])
        names = ("query", "negative") if self.args.objective == "supervised" else ("anchor",)
        anchors = torch.cat([self._embed_anchor(tap.decoder, inputs, name, first) for name in names])
        n = len(examples)
        queries, negatives = anchors[:n], (anchors[n:] if len(names) == 2 else None)
        contrastive = info_nce(rollouts, own, queries, negatives, self.args.contrastive_temperature)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["grace/contrastive_loss"].append(contrastive.item())
        self._metrics[mode]["grace/seconds/contrastive"].append(time.perf_counter() - start)
        scale = self.current_gradient_accumulation_steps
        return self.args.policy_gradient_weight * loss + weight * contrastive / scale

    def _embed_anchor(self, decoder: Any, inputs: dict[str, Any], name: str, rows: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings, with gradient, of the anchor sequences of the given rows (one per example)."""
        from ..modeling.pooling import position_ids_from_mask

        ids, mask, span = (inputs[f"grace_{name}_{part}"][rows] for part in ("ids", "mask", "span"))
        keep = mask.any(dim=0)  # drop columns that are padding in every selected row
        ids, mask, span = ids[:, keep], mask[:, keep], span[:, keep]
        device = next(decoder.parameters()).device
        hidden = decoder(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids_from_mask(mask).to(device),
            use_cache=False,
        ).last_hidden_state
        return pooled(hidden, span.to(device))
