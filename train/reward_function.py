"""GRACE's reward as a TRL reward function: embeddings from the current policy, then the pure formulas.

TRL calls a reward function with the rollouts of this process only. GRACE's reward needs more: an anchor rationale
for each query and negative (or a second generation of each text) written by the *current* policy, embeddings of all
of them from the policy's own hidden states, and the other examples of the step as in-batch negatives. So this
callable holds the trainer, does that work, gathers the embeddings across processes, applies ``rewards.py`` to the
whole step, and returns this process's slice (TRL gathers the rewards again afterwards, as for any reward function).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from trl.models import unwrap_model_for_generation

from ..modeling.generation import GenerationSettings, end_token_ids
from .policy_embedding import decoder_of
from .rewards import RewardTerms, supervised_reward, unsupervised_reward


if TYPE_CHECKING:
    from .trainer import GraceGRPOTrainer


class GraceReward:
    """``reward(prompts, completions, completion_ids, **columns) -> list[float]`` for :class:`GraceGRPOTrainer`."""

    __name__ = "grace"  # TRL logs rewards as rewards/<__name__>/mean

    def __init__(self) -> None:
        self.trainer: GraceGRPOTrainer | None = None
        self.last_rows: dict[str, list[Any]] = {}  # anchor sequences of the last call, for the contrastive term

    def bind(self, trainer: GraceGRPOTrainer) -> None:
        self.trainer = trainer

    def __call__(
        self, prompts: list[str], completions: list[str], completion_ids: list[list[int]], **columns: Any
    ) -> list[float]:
        trainer = self.trainer
        if trainer is None:
            raise RuntimeError("GraceReward is used by GraceGRPOTrainer, which binds it to itself; call bind().")
        log_metric = columns["log_metric"]
        args, accelerator = trainer.args, trainer.accelerator
        k = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        model = accelerator.unwrap_model(trainer.model)
        embedder = trainer.embedder
        end_ids = end_token_ids(decoder_of(model), embedder.tokenizer)
        n_local, offset = len(prompts), accelerator.process_index * len(prompts)

        seconds: dict[str, float] = {"anchor_generation": 0.0, "reward_embeddings": 0.0}
        with _timed(seconds, "reward_embeddings"):
            rollouts = embedder.embed(model, prompts, "document", completion_ids)
        truncated = torch.tensor(
            [len(ids) >= args.max_completion_length and ids[-1] not in end_ids for ids in completion_ids],
            device=rollouts.device,
        )
        # one anchor per example (group of k consecutive rows in the global step), written by the first local row
        groups = [(offset + i) // k for i in range(n_local)]
        firsts = sorted({g: i for i, g in reversed(list(enumerate(groups)))}.values())
        row_of_group = {groups[i]: j for j, i in enumerate(firsts)}
        row_anchor = torch.tensor([row_of_group[g] for g in groups], device=rollouts.device)
        settings = GenerationSettings(
            max_new_tokens=args.max_completion_length, do_sample=True, temperature=args.anchor_temperature
        )
        if args.objective == "supervised":
            anchor_sources = {"query": columns["query"], "document": columns["negative"]}
        else:
            anchor_sources = {"document": prompts}
        anchors, anchor_ids = self._anchor_embeddings(model, anchor_sources, firsts, settings, seconds)
        anchors = {role: embedding[row_anchor] for role, embedding in anchors.items()}
        self.last_rows = self._anchor_rows(anchor_sources, anchor_ids, firsts, groups)

        gather = accelerator.gather
        all_rollouts, all_truncated = gather(rollouts), gather(truncated)
        batch = all_rollouts.shape[0] // k
        grouped, cut = all_rollouts.view(batch, k, -1), all_truncated.view(batch, k)
        weights = args.grace_reward_weights()
        if args.objective == "supervised":
            query, negative = gather(anchors["query"])[::k], gather(anchors["document"])[::k]
            terms = supervised_reward(query, grouped, negative, cut, weights, args.reward_variant)
        else:
            terms = unsupervised_reward(gather(anchors["document"])[::k], grouped, cut, weights)
        _log_terms(log_metric, terms, cut)
        log_metric("grace/examples_in_reward", float(batch))  # all processes' examples: the in-batch negatives
        for phase, value in seconds.items():
            log_metric(f"grace/seconds/{phase}", value)
        return terms.reward.flatten()[offset : offset + n_local].tolist()

    def _anchor_embeddings(
        self,
        model: Any,
        sources: dict[str, list[str]],
        firsts: list[int],
        settings: GenerationSettings,
        seconds: dict[str, float],
    ) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
        """One anchor rationale and embedding per example and role; roles sharing a prompt share one batch."""
        embedder = self.trainer.embedder
        by_template: dict[Any, list[str]] = {}
        for role in sources:
            by_template.setdefault(embedder.templates[role], []).append(role)
        out, ids = {}, {}
        for roles in by_template.values():
            texts = [sources[role][i] for role in roles for i in firsts]
            with _timed(seconds, "anchor_generation"), self._generation_model() as generator:
                rationales = embedder.generate(generator, texts, roles[0], settings)
            with _timed(seconds, "reward_embeddings"):
                embeddings = embedder.embed(model, texts, roles[0], rationales)
            for j, role in enumerate(roles):
                out[role] = embeddings[j * len(firsts) : (j + 1) * len(firsts)]
                ids[role] = rationales[j * len(firsts) : (j + 1) * len(firsts)]
        return out, ids

    def _anchor_rows(
        self,
        sources: dict[str, list[str]],
        rationales: dict[str, list[list[int]]],
        firsts: list[int],
        groups: list[int],
    ) -> dict[str, list[Any]]:
        """Per-row anchor sequences (prompt ids + anchor rationale) for the contrastive loss term."""
        embedder = self.trainer.embedder
        group_row = {groups[i]: j for j, i in enumerate(firsts)}
        names = {"query": "query", "document": "negative"} if len(sources) == 2 else {"document": "anchor"}
        rows: dict[str, list[Any]] = {"grace_example": list(groups)}
        for role, name in names.items():
            prompts = embedder.prompt_ids([sources[role][i] for i in firsts], role)
            rows[f"grace_{name}_ids"] = [prompts[group_row[g]] + rationales[role][group_row[g]] for g in groups]
            rows[f"grace_{name}_prompt_len"] = [len(prompts[group_row[g]]) for g in groups]
        return rows

    def _generation_model(self) -> Any:
        """TRL's own unwrapping for generation: under DeepSpeed ZeRO-3 it gathers the sharded weights first."""
        trainer = self.trainer
        return unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        )


def _log_terms(log_metric: Any, terms: RewardTerms, truncated: torch.Tensor) -> None:
    """Each reward term's mean (before /tau), so a user sees what moves: similarity, consistency or contrast."""
    for name in ("positive", "negative", "consistency", "hard_negative"):
        log_metric(f"grace/{name}", getattr(terms, name).mean().item())
    log_metric("grace/truncated_fraction", truncated.float().mean().item())


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[phase]`` (the step-time profile reads these)."""
    start = time.perf_counter()
    yield
    seconds[phase] += time.perf_counter() - start
