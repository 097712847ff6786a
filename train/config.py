"""``GraceConfig``: TRL's ``GRPOConfig`` plus GRACE's own fields, and nothing else.

Every TRL/transformers option (learning rate, rollouts, checkpoints, ``use_vllm``, ``push_to_hub``, ...) keeps its
TRL name and meaning. A few TRL *defaults* are changed to the GRACE reference's (group-mean advantages without std
scaling, 2048-token rationales, a constant learning rate, weight decay 0.01); the quickstart config shows which of
them to shrink for a CPU run. ``bf16`` defaults to "when the hardware has it", so the same YAML runs on a laptop CPU
and on GPUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig

from ..errors import GraceUserError
from ..modeling.prompts import DEFAULT_INSTRUCTION
from ..modeling.role_modes import PRESETS, RoleMode, RoleModes, as_role_modes
from ..modeling.spans import SPANS
from .rewards import REWARD_VARIANTS, RewardWeights


OBJECTIVES = ("supervised", "unsupervised")
LONG_INPUTS = ("drop", "truncate")
HELDOUT_EVALS = ("wordnet", "suite")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class GraceConfig(GRPOConfig):
    """Configuration of :class:`~grace_st.train.GraceGRPOTrainer`.

    GRACE fields (defaults are the reference code's):
        objective: ``"supervised"`` (columns query/positive/negative) or ``"unsupervised"`` (column text).
        reward_variant: ``"reference"`` (the published formula) or ``"rollout"`` (contrastive terms from each
            rollout's own embedding; see ``rewards.py``).
        consistency_weight / hard_negative_weight: lambda_1 / lambda_2 of the reward.
        reward_temperature: tau; every reward term is divided by it.
        truncation_penalty: the reward of a rationale cut at ``max_completion_length`` without an end token; ``None``
            scores it like any other (useful when a short smoke-run cap cuts nearly every rationale).
        anchor_temperature: sampling temperature of the one anchor rationale for the query and the negative (or,
            unsupervised, the second generation of the text), generated without gradient.
        instruction / query_prompt / document_prompt: the system prompts; queries use ``query_prompt`` and documents
            ``document_prompt`` when set, else ``instruction``. They are saved as the model's prompts.
        pooled_span / pooled_layer: what the embedding averages (same meaning as the encoder's ``span``/``layer``).
        role_modes: per-role modes, the encoder's (a preset name: ``full``, ``query-only``, ``input-only``,
            ``adaptive:N``; or a saved ``role_modes`` object): the rollouts (documents), the negative anchors
            (documents) and the query anchors are embedded with their role's span, rationale budget (default
            ``max_completion_length``) and length threshold, exactly as the saved model will encode them, and the
            saved model carries the modes. ``None`` (default): every role as ``pooled_span``, as before.
        max_input_tokens: texts are cut to this many tokens before templating, exactly as the encoder does.
        heldout_eval / heldout_eval_queries: score the model before and after training on a held-out task
            (``"wordnet"``: retrieval of WordNet definitions from example sentences, nDCG@10; ``"suite"``: the
            held-out suite's test tasks against the untrained base, with paired bootstrap intervals).
        heldout_eval_max_queries / heldout_eval_batch_size / heldout_eval_resamples: the suite's query cap per task
            (smoke runs), generation batch and bootstrap resamples.
        contrastive_weight / contrastive_temperature: an InfoNCE term on the rollouts' pooled embeddings, with
            gradient through the policy's own forward, added to the policy-gradient loss (see ``contrastive.py``).
        policy_gradient_weight: the weight of TRL's policy-gradient loss; 0 with ``contrastive_weight > 0`` is the
            contrastive-only baseline (rationales are still sampled and pooled, but not reinforced).
        long_inputs: ``"drop"`` (the reference's offline filter) or ``"truncate"`` training rows whose positive (or
            text) is longer than ``max_input_tokens``; truncating keeps long-document domains in the training mix,
            cut on tokens exactly as the encoder cuts them.
        overwrite_output_dir: replace a non-empty ``output_dir`` that is not this run's (without it, such a folder is
            refused rather than silently replaced; resuming its ``checkpoints/`` needs no flag).
        max_train_minutes: a wall-clock budget for training (objectives are compared on equal time; the CPU recipe
            fits an hour on any machine kind); ``max_steps`` still applies.
        learning_curve / learning_curve_max_queries: score the suite's validation tasks every ``eval_steps`` steps
            during training (capped at this many queries per task), logged as ``heldout/validation/*`` and plotted
            in the saved model's ``learning_curve.png``; needs ``heldout_eval: "suite"``.
    """

    objective: str = field(default="supervised", metadata=_help(f"One of {OBJECTIVES}."))
    reward_variant: str = field(default="reference", metadata=_help(f"One of {REWARD_VARIANTS}."))
    consistency_weight: float = field(default=0.2, metadata=_help("lambda_1: weight of the consistency term."))
    hard_negative_weight: float = field(default=0.2, metadata=_help("lambda_2: weight of the hard-negative term."))
    reward_temperature: float = field(default=0.1, metadata=_help("tau: the reward is divided by it (> 0)."))
    truncation_penalty: float | None = field(
        default=-1.0, metadata=_help("Reward of a rationale cut at the length limit (null: score it as usual).")
    )
    anchor_temperature: float = field(default=0.5, metadata=_help("Sampling temperature of anchor rationales."))
    instruction: str = field(default=DEFAULT_INSTRUCTION, metadata=_help("System prompt (the reference's)."))
    query_prompt: str | None = field(default=None, metadata=_help("System prompt for queries (default: instruction)."))
    document_prompt: str | None = field(default=None, metadata=_help("System prompt for documents."))
    pooled_span: str = field(default="input_and_rationale", metadata=_help(f"One of {SPANS}."))
    pooled_layer: int = field(default=-1, metadata=_help("Hidden-state layer that is pooled (-1: last)."))
    role_modes: str | None = field(
        default=None, metadata=_help(f"Per-role modes, a preset: one of {PRESETS} (null: pooled_span for all).")
    )
    max_input_tokens: int = field(default=1024, metadata=_help("Texts are cut to this many tokens."))
    heldout_eval: str | None = field(
        default=None, metadata=_help(f"Held-out task scored before/after: {HELDOUT_EVALS}")
    )
    heldout_eval_queries: int = field(default=64, metadata=_help("Queries of the held-out task."))
    contrastive_weight: float = field(
        default=0.0, metadata=_help("Weight of the InfoNCE term on the rollouts' pooled embeddings (0: GRPO only).")
    )
    contrastive_temperature: float = field(default=0.05, metadata=_help("Temperature of the InfoNCE term (> 0)."))
    policy_gradient_weight: float = field(
        default=1.0, metadata=_help("Weight of the policy-gradient loss (0: contrastive only).")
    )
    long_inputs: str = field(
        default="drop",
        metadata=_help(f"Training rows whose rollout text exceeds max_input_tokens: one of {LONG_INPUTS}."),
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata=_help("Stop training after this many minutes (checkpoint, then score and save as usual)."),
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata=_help("Replace a non-empty output_dir (refused without it, unless resuming its checkpoints)."),
    )
    # TRL defaults replaced by the GRACE reference's
    max_completion_length: int | None = field(default=2048, metadata=_help("Rationale length cap (tokens)."))
    scale_rewards: str = field(default="none", metadata=_help("'none': group-mean advantages, no std scaling."))
    lr_scheduler_type: str = field(default="constant", metadata=_help("Learning-rate schedule."))
    weight_decay: float = field(default=0.01, metadata=_help("AdamW weight decay."))
    bf16: bool | None = field(default=None, metadata=_help("bf16 mixed precision (default: when the GPU has it)."))
    logging_steps: float = field(default=1, metadata=_help("Log every N steps (GRACE runs are short; log all)."))
    # --- held-out suite (heldout_eval="suite"; see train/heldout.py) ---
    heldout_eval_max_queries: int | None = field(
        default=None, metadata=_help("Queries per suite task (null: the suite's 150 validation / 300 test).")
    )
    heldout_eval_batch_size: int = field(default=64, metadata=_help("Texts per generation batch when scoring."))
    heldout_eval_resamples: int = field(default=1000, metadata=_help("Paired bootstrap resamples (>= 1000)."))
    # --- end of the held-out suite block ---
    # --- learning curve (see train/learning_curve.py) ---
    learning_curve: bool = field(
        default=False,
        metadata=_help(
            "Score the suite's validation tasks every eval_steps during training (needs heldout_eval: suite)."
        ),
    )
    learning_curve_max_queries: int = field(
        default=50, metadata=_help("Validation queries per suite task at each learning-curve evaluation.")
    )
    # --- end of the learning curve block ---

    def __post_init__(self) -> None:
        if self.bf16 is None:  # TRL would turn None into True and then refuse to run on a CPU
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) and not self.fp16
        if not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator; it only warns on a CPU
        self._validate_grace_fields()
        super().__post_init__()

    def _validate_grace_fields(self) -> None:
        """Errors that name the value and the fix, before TRL's own checks."""
        choices = {
            "objective": OBJECTIVES,
            "reward_variant": REWARD_VARIANTS,
            "pooled_span": SPANS,
            "long_inputs": LONG_INPUTS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise GraceUserError(f"{name}={getattr(self, name)!r} is not valid; use one of {allowed}.")
        if isinstance(self.heldout_eval, str) and self.heldout_eval.lower() in ("", "none", "null"):
            self.heldout_eval = None  # as typed on a command line
        if self.heldout_eval is not None and self.heldout_eval not in HELDOUT_EVALS:
            raise GraceUserError(
                f"heldout_eval={self.heldout_eval!r} is not valid; use one of {HELDOUT_EVALS} or null."
            )
        if isinstance(self.truncation_penalty, str) and self.truncation_penalty.lower() in ("none", "null"):
            self.truncation_penalty = None
        self._validate_loss_weights()
        for name in ("consistency_weight", "hard_negative_weight", "truncation_penalty"):
            value = getattr(self, name)
            if (value is not None or name != "truncation_penalty") and not (
                isinstance(value, (int, float)) and math.isfinite(value)
            ):
                raise GraceUserError(f"{name}={value!r} must be a finite number.")
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            raise GraceUserError(f"learning_rate={lr!r} must be a finite number >= 0 (e.g. 1e-6 for full fine-tunes).")
        for name in ("reward_temperature", "anchor_temperature"):
            if not getattr(self, name) > 0:
                raise GraceUserError(
                    f"{name}={getattr(self, name)!r} must be > 0 (e.g. 0.1 for tau, 0.5 for anchors)."
                )
        if self.pooled_span == "input":
            raise GraceUserError(
                "pooled_span='input' pools no rationale, so the policy's rationales could not change the reward. "
                "Use 'input_and_rationale' (the reference) or 'rationale'."
            )
        for name in ("max_input_tokens", "heldout_eval_queries"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise GraceUserError(f"{name}={getattr(self, name)!r} must be a positive integer.")
        if not isinstance(self.max_completion_length, int) or self.max_completion_length < 1:
            raise GraceUserError(
                f"max_completion_length={self.max_completion_length!r} must be a positive integer (the rationale "
                "length cap; the reference uses 2048, a CPU smoke run 32-64)."
            )
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise GraceUserError(
                "instruction must be a non-empty system prompt (default: the GRACE reference prompt)."
            )
        self._validate_suite_fields()
        self._validate_learning_curve_fields()
        self._validate_role_modes()

    def _validate_role_modes(self) -> None:
        """Per-role modes a GRPO run can train: the rollouts are documents, so documents must get a rationale."""
        if isinstance(self.role_modes, str) and self.role_modes.lower() in ("", "none", "null"):
            self.role_modes = None  # as typed on a command line
        modes = self.grace_role_modes()
        if modes is None:
            return
        if not modes.document.generates():
            raise GraceUserError(
                f"role_modes={modes.label()!r} embeds documents input-only, but GRACE's rollouts are rationales for "
                "the documents: their reward could not depend on the rationale, so nothing would be trained. Train "
                "with 'full' (or an 'adaptive:N' preset) and set the model's role_modes to 'query-only' after "
                "training, or leave role_modes unset."
            )
        for role in ("query", "document"):
            budget = modes.for_role(role).max_new_tokens
            if budget is not None and budget > self.max_completion_length:
                raise GraceUserError(
                    f"role_modes gives {role}s a rationale budget of {budget} tokens, more than "
                    f"max_completion_length={self.max_completion_length}; raise max_completion_length or lower it."
                )
        unsupported = {"contrastive_weight > 0": self.contrastive_weight > 0, "use_vllm": bool(self.use_vllm)}
        for name, used in unsupported.items():
            if used:
                raise GraceUserError(
                    f"role_modes is not supported with {name} yet (that path pools every role with pooled_span). "
                    "Leave role_modes unset for this run, or turn the option off."
                )

    def grace_role_modes(self) -> RoleModes | None:
        """The per-role modes (``None``: every role pooled as ``pooled_span``); raises on an unknown preset."""
        return as_role_modes(self.role_modes, self.pooled_span)

    def grace_role_mode(self, role: str) -> RoleMode:
        """The span, budget and length threshold a ``role`` text is embedded with during training."""
        modes = self.grace_role_modes()
        mode = RoleMode(self.pooled_span) if modes is None else modes.for_role(role)
        if mode.max_new_tokens is None:
            mode = RoleMode(mode.span, self.max_completion_length, mode.input_only_above)
        return mode

    def _validate_suite_fields(self) -> None:
        """The held-out suite block's fields."""
        cap = self.heldout_eval_max_queries
        if isinstance(cap, str) and cap.lower() in ("none", "null"):
            self.heldout_eval_max_queries = None  # as typed on a command line
        if self.heldout_eval_max_queries is not None and (
            not isinstance(self.heldout_eval_max_queries, int) or self.heldout_eval_max_queries < 1
        ):
            raise GraceUserError(
                f"heldout_eval_max_queries={self.heldout_eval_max_queries!r} must be a positive integer or null "
                "(null: the suite's default sizes)."
            )
        for name in ("heldout_eval_batch_size", "heldout_eval_resamples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise GraceUserError(f"{name}={getattr(self, name)!r} must be a positive integer.")

    def _validate_learning_curve_fields(self) -> None:
        """The learning-curve block's fields (the interval is TRL's own ``eval_steps``)."""
        cap = self.learning_curve_max_queries
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise GraceUserError(
                f"learning_curve_max_queries={cap!r} must be a positive integer (e.g. 50: about a minute per "
                "evaluation on the 135M backbone)."
            )
        if not self.learning_curve:
            return
        if self.heldout_eval != "suite":
            raise GraceUserError(
                f"learning_curve=True scores the held-out suite's validation tasks, but heldout_eval="
                f"{self.heldout_eval!r}; set heldout_eval: suite (or learning_curve: false)."
            )
        steps = self.eval_steps
        if steps is None or not (isinstance(steps, (int, float)) and math.isfinite(steps) and steps > 0):
            raise GraceUserError(
                f"learning_curve=True needs eval_steps > 0 (the interval between evaluations), got eval_steps="
                f"{steps!r}; e.g. eval_steps: 50 (every 50 steps) or 0.1 (ten times per run)."
            )
        if steps > 1 and steps != int(steps):
            raise GraceUserError(
                f"eval_steps={steps!r} must be a whole number of steps when above 1 (or a ratio < 1)."
            )

    def _validate_loss_weights(self) -> None:
        for name in ("contrastive_weight", "policy_gradient_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise GraceUserError(f"{name}={value!r} must be a finite number >= 0.")
        if self.contrastive_weight == 0 and self.policy_gradient_weight == 0:
            raise GraceUserError(
                "policy_gradient_weight=0 and contrastive_weight=0 leave nothing to train; set contrastive_weight > 0 "
                "(e.g. 1.0) for contrastive-only training, or policy_gradient_weight: 1 for GRPO."
            )
        if not self.contrastive_temperature > 0:
            raise GraceUserError(f"contrastive_temperature={self.contrastive_temperature!r} must be > 0 (e.g. 0.05).")
        if self.max_train_minutes is not None and not (
            isinstance(self.max_train_minutes, (int, float))
            and math.isfinite(self.max_train_minutes)
            and self.max_train_minutes > 0
        ):
            raise GraceUserError(
                f"max_train_minutes={self.max_train_minutes!r} must be a number > 0 (or null: no budget)."
            )
        if self.contrastive_weight > 0 and self.pooled_layer != -1:
            raise GraceUserError(
                f"contrastive_weight > 0 pools the last layer of the policy's own forward; pooled_layer="
                f"{self.pooled_layer} is not supported with it. Use pooled_layer: -1 or contrastive_weight: 0."
            )

    def grace_reward_weights(self) -> RewardWeights:
        """The reward constants as the pure reward functions take them."""
        return RewardWeights(
            self.consistency_weight, self.hard_negative_weight, self.reward_temperature, self.truncation_penalty
        )

    def prompt_for(self, role: str) -> str:
        """System prompt for ``"query"`` or ``"document"`` texts."""
        chosen = self.query_prompt if role == "query" else self.document_prompt
        return chosen or self.instruction
