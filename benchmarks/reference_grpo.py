"""The GRACE step as it was before rollouts went through the single pass: the benchmark's reference, not a product.

TRL's ``generate`` writes the rollouts (on the encoder's prompt ids, through TRL's private ``_tokenize_prompts``),
``transformers.generate`` writes the anchors inside the reward, and a separate no-grad forward embeds all of them; the
reward holds the trainer to do that. ``grpo_step_profile.py --compare`` times this path against
:class:`~grace_st.train.GraceGRPOTrainer` in the same process, on the same data and random stream, and checks that both
sample the same tokens. The private overrides below are the old path's, kept only for that comparison.

One thing differs from the old code, and it costs nothing: the new path samples the rollouts and the anchors from two
streams seeded from torch's default one (``grace_st.train.rollouts.draw_seeds``), so this reference reseeds
``generate`` with the same two seeds, before the rollouts and before the anchors, to draw the same tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from grace_st.modeling.generation import GenerationSettings, end_token_ids, generate_rationales
from grace_st.modeling.prompts import build_prompt_batch
from grace_st.train.config import GraceConfig
from grace_st.train.data import prompt_fields
from grace_st.train.policy_embedding import PolicyEmbedder, decoder_of
from grace_st.train.rewards import supervised_reward
from grace_st.train.rollouts import draw_seeds


class ReferenceGRPOTrainer(GRPOTrainer):
    """The old ``GraceGRPOTrainer`` (supervised objective only): TRL's generation, reward bound to the trainer."""

    def __init__(
        self, model: Any, args: GraceConfig, train_dataset: Any, processing_class: Any, **kwargs: Any
    ) -> None:
        reward = ReferenceReward()
        super().__init__(
            model=model, reward_funcs=[reward], args=args, train_dataset=train_dataset,
            processing_class=processing_class, **kwargs,
        )  # fmt: skip
        self.embedder = PolicyEmbedder(
            processing_class,
            prompts={"query": args.prompt_for("query"), "document": args.prompt_for("document")},
            max_input_tokens=args.max_input_tokens,
            span=args.pooled_span,
            layer=args.pooled_layer,
            batch_size=max(args.per_device_train_batch_size, args.num_generations),
        )
        reward.trainer = self

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict]:
        return self.embedder.prompt_ids([prompt_fields(p)["text"] for p in prompts], "document"), None, {}

    def _generate(self, prompts: list) -> Any:
        start = time.perf_counter()
        rollout_seed, self.anchor_seed = draw_seeds(2)
        torch.manual_seed(rollout_seed)
        out = super()._generate(prompts)
        self._metrics["train"]["grace/seconds/rollout_generation"].append(time.perf_counter() - start)
        return out


class ReferenceReward:
    """The old reward: anchors with ``generate``, embeddings with a forward, then the pure formula."""

    __name__ = "grace"

    def __init__(self) -> None:
        self.trainer: ReferenceGRPOTrainer | None = None
        self.anchor_ids: list[list[int]] = []  # the last call's anchors: queries then negatives

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], **columns: Any) -> list:
        trainer, seconds = self.trainer, {"anchor_generation": 0.0, "reward_embeddings": 0.0}
        args, k = trainer.args, trainer.num_generations
        model, embedder = trainer.accelerator.unwrap_model(trainer.model), trainer.embedder
        end_ids = end_token_ids(decoder_of(model), embedder.tokenizer)
        fields = [prompt_fields(p) for p in prompts]
        with _timed(seconds, "reward_embeddings"):
            rollouts = embedder.embed(model, [f["text"] for f in fields], "document", completion_ids)
        cut = torch.tensor(
            [len(ids) >= args.max_completion_length and ids[-1] not in end_ids for ids in completion_ids]
        )
        examples = fields[::k]
        texts = [f["query"] for f in examples] + [f["negative"] for f in examples]
        settings = GenerationSettings(args.max_completion_length, do_sample=True, temperature=args.anchor_temperature)
        torch.manual_seed(trainer.anchor_seed)
        with _timed(seconds, "anchor_generation"), self._generation_model() as generator:
            self.anchor_ids = _generate(embedder, decoder_of(generator), texts, settings, end_ids)
        with _timed(seconds, "reward_embeddings"):
            anchors = embedder.embed(model, texts, "query", self.anchor_ids)
        n = len(examples)
        grouped = rollouts.view(n, k, -1)
        weights = args.grace_reward_weights()
        terms = supervised_reward(anchors[:n], grouped, anchors[n:], cut.view(n, k), weights, args.reward_variant)
        for phase, value in seconds.items():
            columns["log_metric"](f"grace/seconds/{phase}", value)
        return terms.reward.flatten().tolist()

    def _generation_model(self) -> Any:
        trainer = self.trainer
        return unwrap_model_for_generation(
            trainer.model_wrapped, trainer.accelerator, gather_deepspeed3_params=trainer.args.ds3_gather_for_generation
        )


def _generate(
    embedder: PolicyEmbedder, decoder: Any, texts: list[str], settings: GenerationSettings, end_ids: list[int]
) -> list[list[int]]:
    """One rationale per text with ``transformers.generate`` (ids up to and including the first end token)."""
    batch = build_prompt_batch(
        embedder.tokenizer, embedder.templates["query"], texts, embedder.max_input_tokens, embedder.pad_token_id
    )
    was_training = decoder.training
    decoder.eval()
    try:
        with torch.no_grad():
            ids = generate_rationales(
                decoder, batch.input_ids, batch.attention_mask, settings, end_ids, embedder.pad_token_id
            )
    finally:
        decoder.train(was_training)
    out = []
    for row in ids.tolist():
        ends = [i for i, token in enumerate(row) if token in end_ids]
        out.append(row[: ends[0] + 1] if ends else row)
    return out


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds[phase] += time.perf_counter() - start
