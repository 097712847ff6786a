"""``GraceGRPOTrainer``: TRL's GRPO trainer with GRACE's rollouts and contrastive reward over rationales."""

from __future__ import annotations

import time
import warnings
from typing import Any

import torch
from datasets import Dataset
from trl import GRPOTrainer

from ..errors import GraceUserError, GraceUserTypeError
from ..modeling.pooling import position_ids_from_mask
from ..modeling.spans import pooled_span_mask
from .config import GraceConfig
from .contrastive import HiddenStateTap, info_nce, pad_sequences, pooled, prompt_span
from .data import prompt_fields
from .reward_function import GraceReward
from .rollouts import GraceRollouts, sequence_span_mask
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

    4. **An optional contrastive term** (``contrastive_weight > 0``): ``_generate_and_score_completions`` (private)
       is extended so that the generation batch keeps the rollout columns the contrastive term needs (each row's
       example, its query anchor sequence and the no-grad negative embedding) as tensors, which TRL then shuffles
       and splits with the rest; ``compute_loss`` records the last hidden states of TRL's own policy forward, pools
       each rollout as the encoder does, embeds the query anchors with gradient, and adds
       ``contrastive_weight * InfoNCE / gradient_accumulation_steps`` to TRL's loss (scaled by
       ``policy_gradient_weight``). The private override is needed because TRL keeps rollout columns for the reward
       functions only, not for the loss. With ``contrastive_weight: 0`` both return TRL's results untouched.

    No other TRL private method is overridden. Everything else — group-mean advantages (``scale_rewards="none"`` by
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
            raise GraceUserTypeError(
                f"args must be a GraceConfig, got {type(args).__name__}. Build one with GraceConfig(...)."
            )
        for name in ("reward_funcs", "rollout_func", "tools", "environment_factory"):
            if name in kwargs:
                raise GraceUserTypeError(
                    f"GraceGRPOTrainer sets {name} itself (GRACE's rollouts and reward); do not pass it."
                )
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

    # --- the contrastive term (see contrastive.py) ---------------------------------------------------------------

    def _generate_and_score_completions(self, generation_batch: Any) -> dict[str, Any]:
        output = super()._generate_and_score_completions(generation_batch)
        if self.args.contrastive_weight > 0 and self.model.training:
            output.update(_contrastive_columns(generation_batch, self.args.objective, self.args.pooled_span))
        return output

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
        prompt_part = prompt_span(inputs["prompt_mask"], int(inputs["grace_prefix_len"][0]))
        span = pooled_span_mask(prompt_part, inputs["completion_mask"], self.args.pooled_span)
        rollouts = pooled(tap.hidden(), span)
        examples, own = torch.unique(inputs["grace_example"], return_inverse=True)
        first = torch.stack([(inputs["grace_example"] == e).nonzero()[0, 0] for e in examples])
        queries = self._embed_anchors(tap.decoder, inputs, first)
        negatives = (
            inputs["grace_negative_embedding"][first].to(rollouts) if "grace_negative_embedding" in inputs else None
        )
        contrastive = info_nce(
            rollouts, own.to(rollouts.device), queries, negatives, self.args.contrastive_temperature
        )
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["grace/contrastive_loss"].append(contrastive.item())
        self._metrics[mode]["grace/seconds/contrastive"].append(time.perf_counter() - start)
        scale = self.current_gradient_accumulation_steps
        return self.args.policy_gradient_weight * loss + weight * contrastive / scale

    def _embed_anchors(self, decoder: Any, inputs: dict[str, Any], rows: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings, with gradient, of the query anchors (unsupervised: the anchors) of the given rows."""
        ids, mask, span = (inputs[f"grace_anchor_{part}"][rows] for part in ("ids", "mask", "span"))
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


def _contrastive_columns(rows: list[dict[str, Any]], objective: str, span: str) -> dict[str, torch.Tensor]:
    """The rollout columns the contrastive term needs, as tensors, so TRL shuffles and splits them with the rollouts.

    The query anchor (unsupervised: the anchor) is kept as a padded sequence with its pooled-span mask, to be embedded
    again with gradient; the negative anchor only as its no-grad embedding (a candidate the rollouts are pushed
    away from; embedding the long negative documents again with gradient would double the cost of the term).
    """
    name = "query" if objective == "supervised" else "anchor"
    sequences = [row[f"grace_{name}_ids"] for row in rows]
    ids, mask = pad_sequences(sequences, pad_id=0)
    spans = [
        sequence_span_mask(len(ids_), row[f"grace_{name}_prompt_len"], row[f"grace_{name}_prefix_len"], span).tolist()
        for ids_, row in zip(sequences, rows, strict=True)
    ]
    out = {
        "grace_example": torch.tensor([row["grace_example"] for row in rows], dtype=torch.long),
        "grace_prefix_len": torch.tensor([row["grace_prefix_len"] for row in rows], dtype=torch.long),
        "grace_anchor_ids": ids,
        "grace_anchor_mask": mask,
        "grace_anchor_span": pad_sequences(spans, pad_id=0)[0],  # left-padded like the ids; padding is not pooled
    }
    if objective == "supervised":
        out["grace_negative_embedding"] = torch.stack([row["grace_negative_embedding"] for row in rows]).float()
    return out


def _check_prompts(dataset: Dataset, objective: str) -> None:
    """Fail at construction, not at the first step, when the data was not prepared for ``objective``."""
    fields = prompt_fields(dataset[0]["prompt"]) if "prompt" in dataset.column_names and len(dataset) else {}
    needed = ["text", "query", "negative"] if objective == "supervised" else ["text"]
    missing = [name for name in needed if name not in fields]
    if missing:
        raise GraceUserError(
            f"train_dataset's prompts lack {missing} for objective={objective!r}; prepare it with "
            "grace_st.train.prepare_dataset (it puts positive/text, query and negative into the 'prompt' column)."
        )
