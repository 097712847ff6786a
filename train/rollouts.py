"""GRACE's rollouts through TRL's ``rollout_func`` seam: the encoder's single pass writes and embeds every rationale.

A GRACE step needs, from the current policy, K rollouts per example (the rationales GRPO trains on), one anchor
rationale per query and negative (unsupervised: a second generation of the text), and the GRACE embedding of each.
The encoder's single pass (``modeling/single_pass.py``) samples exactly as ``generate`` does and reads the pooled
hidden states off the generation itself, so one call writes and embeds the rollouts and the anchors: no second
``generate`` for anchors and no separate forward to embed them. Prompt ids, template, truncation and the pooled span
are the encoder's (``build_prompt_batch``, ``pooled_span_mask``), so the reward scores a rationale with the vector the
saved model would give it; a test holds the two equal. With per-role modes (``GraceConfig.role_modes``) each text is
embedded with its role's span, budget and length threshold, as the saved model encodes that role: the rollouts and
the negative anchors as documents, the query anchors as queries. A role budget below ``max_completion_length`` cuts
that role's rationales after generation (a causal model's first ``n`` tokens and their states do not depend on what
follows, so this is what generating with the smaller budget gives), and a rollout its role embeds input-only (a
document over the length threshold) gets the same vector for every rationale, hence no advantage and no gradient.

TRL calls ``rollout_func(prompts, trainer)`` with this process's prompts (each repeated ``num_generations`` times in a
row) and nothing else, so each prompt carries its example's query and negative (``data.prompt_message``). It returns
TRL's ``prompt_ids``, ``completion_ids`` (up to and including the first end token) and ``logprobs`` (each sampled
token's log-probability at the rollout temperature), plus these per-row columns, which TRL puts into its per-sample
input dicts and hands to the reward function:

``grace_example``
    int: index of the row's example among all processes' examples of this generation batch (rows of one example
    share it; process ``p`` holds examples ``p * E ... p * E + E - 1``).
``grace_embedding``
    ``(H,)`` float32 tensor: the rollout's L2-normalised GRACE embedding, computed without gradient.
``grace_truncated``
    bool: the rollout reached ``max_completion_length`` without an end token.
``grace_prefix_len``
    int: tokens of the instruction prefix at the start of ``prompt_ids`` (never pooled).
``grace_{role}_ids``, ``grace_{role}_prompt_len``, ``grace_{role}_prefix_len``, ``grace_{role}_embedding``
    for ``role`` in ``query`` and ``negative`` (supervised) or ``anchor`` (unsupervised): the row's example's anchor
    sequence (prompt ids as the encoder builds them for that role, then the anchor rationale up to and including its
    first end token), how many of those ids are prompt, how many are the instruction prefix, and its no-grad
    embedding. :func:`sequence_span_mask` turns lengths into the pooled-span mask of such a sequence.
``grace_seconds``
    one dict for the whole call (TRL gives every row the same object): wall seconds of ``generation`` (rollouts,
    anchors and their embeddings); the reward logs it as ``grace/seconds/generation``.

The rollouts and the anchors are written in one batch, one decode loop: a decode step costs about as much for 24 rows
as for 16 on a CPU, so the anchors nearly ride along. Each samples from its own random stream, seeded from torch's
default stream (which the trainer checkpoints and restores), so each draws exactly the tokens a ``generate`` call of
its own would draw from that seed.

With ``use_vllm`` the rollouts come from TRL's vLLM helper (``trainer.vllm_generation``, whose weights TRL syncs
before calling ``rollout_func``) and are embedded with one forward through ``embed_sequences``; anchors, which need
their own temperature, still come from the single pass on the training model. That path needs a GPU and vLLM and is
not exercised by the tests here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from trl.models import unwrap_model_for_generation

from ..errors import GraceUserError
from ..modeling.cpu_decode_attention import cpu_decode_attention
from ..modeling.cpu_linears import packed_linears
from ..modeling.generation import GenerationSettings, end_token_ids
from ..modeling.pooling import masked_mean
from ..modeling.prompts import build_prompt_batch
from ..modeling.single_pass import RowGroup, generate_with_hidden_states
from ..modeling.spans import pooled_span_masks, rationale_mask
from .config import GraceConfig
from .data import prompt_fields
from .policy_embedding import PolicyEmbedder, decoder_of


UNSUPPORTED_SETTINGS: dict[str, tuple[Any, ...]] = {
    "top_k": (0, None),
    "min_p": (None, 0.0),
    "repetition_penalty": (1.0,),
    "generation_kwargs": (None, {}),
    "chat_template_kwargs": (None, {}),
    "cache_implementation": (None,),
    "use_transformers_continuous_batching": (False,),
    "use_transformers_paged": (False,),
}
"""TRL generation settings the single pass does not implement, with the values that mean "not used"."""

ANCHOR_ROLES = {"query": "query", "negative": "document", "anchor": "document"}
"""Prompt role (system prompt) each anchor is written under."""


def check_generation_settings(args: GraceConfig) -> None:
    """Reject TRL generation settings the rollouts would otherwise silently ignore."""
    for name, neutral in UNSUPPORTED_SETTINGS.items():
        value = getattr(args, name, neutral[0])
        if value not in neutral:
            raise GraceUserError(
                f"{name}={value!r} is not supported by GRACE training: rollouts are written by the encoder's single "
                "pass, which samples with temperature and top_p only (as the saved model encodes). Remove "
                f"{name} from the configuration (or set it to {neutral[0]!r})."
            )


def sequence_span_mask(length: int, prompt_len: int, prefix_len: int, span: str) -> torch.Tensor:
    """``(length,)`` mask of the pooled positions of one unpadded ``[prompt | rationale]`` sequence.

    ``input_and_rationale`` pools everything after the instruction prefix; ``rationale`` only the rationale. The
    rationale ids end at their first end token (as every ``grace_*_ids`` column does), so nothing after it exists.
    """
    first = {"input_and_rationale": prefix_len, "rationale": prompt_len}.get(span)
    if first is None:
        raise GraceUserError(f"span={span!r} has no rationale to train; use 'input_and_rationale' or 'rationale'.")
    return (torch.arange(length) >= first).long()


@dataclass
class Rationales:
    """One generated rationale per prompt, with what GRPO and the reward need of it."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # up to and including the first end token
    logprobs: list[list[float]]
    embeddings: torch.Tensor  # (N, H) L2-normalised, no gradient
    truncated: list[bool]

    def rows(self, start: int, stop: int) -> Rationales:
        return Rationales(
            self.prompt_ids[start:stop],
            self.completion_ids[start:stop],
            self.logprobs[start:stop],
            self.embeddings[start:stop],
            self.truncated[start:stop],
        )


@dataclass
class Part:
    """Texts to write a rationale for under one prompt role, with their decoding settings and random stream."""

    texts: list[str]
    role: str
    settings: GenerationSettings
    generator: torch.Generator | None = None  # None: torch's default stream


def streams(count: int, device: torch.device) -> list[torch.Generator]:
    """``count`` random streams seeded from torch's default one, which the trainer checkpoints and restores.

    The rollouts and the anchors each draw from their own stream, so one decode loop can write both and each samples
    exactly what a ``generate`` call of its own would sample from the same seed.
    """
    return [torch.Generator(device=device).manual_seed(seed) for seed in draw_seeds(count)]


def draw_seeds(count: int) -> list[int]:
    """``count`` seeds from torch's default random stream (advancing it)."""
    return torch.randint(0, 2**62, (count,)).tolist()


def _stack(batches: list[Any], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt batches as one left-padded batch: ids, attention mask, pooled-span mask."""
    width = max(batch.input_ids.shape[1] for batch in batches)

    def left(tensor: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(tensor, (width - tensor.shape[1], 0), value=value)

    return (
        torch.cat([left(b.input_ids, pad_token_id) for b in batches]),
        torch.cat([left(b.attention_mask, 0) for b in batches]),
        torch.cat([left(b.span_mask, 0) for b in batches]),
    )


def examples_of(prompts: Sequence[Any], k: int, objective: str) -> list[dict[str, str]]:
    """The examples behind ``k`` consecutive rows each, with their text (and query and negative, supervised)."""
    if k < 1 or len(prompts) % k:
        raise ValueError(
            f"This process got {len(prompts)} rollout rows, not a multiple of num_generations={k}, so an example's "
            "rollouts would be split across processes (each would draw its own anchors). Make "
            "per_device_train_batch_size * steps_per_generation a multiple of num_generations."
        )
    fields = [prompt_fields(p) for p in prompts]
    examples = fields[::k]
    for i, example in enumerate(examples):
        if any(row != example for row in fields[i * k : (i + 1) * k]):
            raise ValueError(f"Rows {i * k}..{(i + 1) * k - 1} should repeat one prompt {k} times (TRL's sampler).")
        if objective == "supervised" and not ("query" in example and "negative" in example):
            raise GraceUserError(
                f"The supervised objective needs each prompt to carry its query and negative, got {prompts[i * k]!r}. "
                "Prepare the data with grace_st.train.prepare_dataset."
            )
    return examples


class GraceRollouts:
    """``rollout_func(prompts, trainer) -> dict`` for :class:`~grace_st.train.GraceGRPOTrainer` (see module docs)."""

    def __init__(self, args: GraceConfig) -> None:
        check_generation_settings(args)
        self.args = args
        length = args.max_completion_length
        self.rollout_settings = GenerationSettings(
            length, do_sample=True, temperature=args.temperature, top_p=args.top_p
        )
        self.anchor_settings = GenerationSettings(
            length, do_sample=True, temperature=args.anchor_temperature, top_p=args.top_p
        )
        self.embedder: PolicyEmbedder | None = None  # built from the trainer's tokenizer on the first call

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        k = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        examples = examples_of(prompts, k, self.args.objective)
        first = trainer.accelerator.process_index * len(examples)
        texts = [example["text"] for example in examples for _ in range(k)]
        start = time.perf_counter()
        with self._policy(trainer) as policy, cpu_decode_attention(policy), packed_linears(policy, len(texts)):
            embedder = self._embedder(trainer)
            end_ids = end_token_ids(policy, embedder.tokenizer)
            rollout_stream, anchor_stream = streams(2, next(policy.parameters()).device)
            anchor_parts = self._anchor_parts(examples, anchor_stream)
            if trainer.use_vllm:
                rollouts = self._vllm_rollouts(trainer, policy, texts, k, end_ids)
                anchors = self.write(policy, anchor_parts, end_ids)
            else:  # rollouts and anchors in one batch: one decode loop, each with its own settings and stream
                rollout_part = Part(texts, "document", self.rollout_settings, rollout_stream)
                rollouts, *anchors = self.write(policy, [rollout_part, *anchor_parts], end_ids)
        seconds = {"generation": time.perf_counter() - start}
        return self._columns(rollouts, self._anchor_outputs(anchors, len(examples)), k, first, seconds)

    @contextmanager
    def _policy(self, trainer: Any) -> Iterator[Any]:
        """The policy with its LoRA adapter active, in eval mode, without gradient.

        TRL's own unwrapping for generation: under DeepSpeed ZeRO-3 it gathers the sharded weights first.
        ``decoder_of`` is the causal LM under a PEFT wrapper, whose LoRA layers stay in place and active.
        """
        with unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=self.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
        ) as unwrapped:
            policy = decoder_of(unwrapped)
            was_training = policy.training
            policy.eval()  # no dropout while sampling or in a vector that scores a rationale
            try:
                with torch.no_grad():
                    yield policy
            finally:
                policy.train(was_training)

    def _embedder(self, trainer: Any) -> PolicyEmbedder:
        if self.embedder is None:
            processing = trainer.processing_class
            tokenizer = getattr(processing, "tokenizer", processing)
            prompts = {role: self.args.prompt_for(role) for role in ("query", "document")}
            args = self.args
            self.embedder = PolicyEmbedder(
                tokenizer, prompts, args.max_input_tokens, args.pooled_span, args.pooled_layer
            )
        return self.embedder

    def write(self, policy: Any, parts: list[Part], end_ids: list[int]) -> list[Rationales]:
        """One rationale per text of every part with its embedding, in one single pass over all of them.

        Consecutive parts with the same settings and stream sample as one ``generate`` call would.
        """
        embedder = self.embedder
        batches = [
            build_prompt_batch(
                embedder.tokenizer,
                embedder.templates[p.role],
                p.texts,
                embedder.max_input_tokens,
                embedder.pad_token_id,
            )
            for p in parts
        ]
        ids, mask, prompt_span = _stack(batches, embedder.pad_token_id)
        groups: list[RowGroup] = []
        for part in parts:
            if groups and (groups[-1].settings, groups[-1].generator) == (part.settings, part.generator):
                groups[-1] = RowGroup(groups[-1].rows + len(part.texts), part.settings, part.generator)
            else:
                groups.append(RowGroup(len(part.texts), part.settings, part.generator))
        device = next(policy.parameters()).device
        out = generate_with_hidden_states(
            policy, ids.to(device), mask.to(device), parts[0].settings, end_ids, embedder.pad_token_id,
            embedder.layer, logprobs=True, groups=groups,
        )  # fmt: skip
        spans, budgets = self._row_modes(parts, batches)
        completion = rationale_mask(out.rationale_ids, end_ids)
        steps = torch.arange(completion.shape[1], device=completion.device)
        completion = completion * (steps[None, :] < torch.tensor(budgets, device=completion.device)[:, None]).long()
        span = pooled_span_masks(prompt_span.to(device), completion, spans)
        embeddings = F.normalize(masked_mean(out.hidden.float(), span), p=2, dim=-1)
        lengths = completion.sum(dim=1).tolist()
        completion_ids = [row[:n] for row, n in zip(out.rationale_ids.tolist(), lengths, strict=True)]
        written = Rationales(
            prompt_ids=[row[m.bool()].tolist() for row, m in zip(ids, mask, strict=True)],
            completion_ids=completion_ids,
            logprobs=[row[:n] for row, n in zip(out.logprobs.tolist(), lengths, strict=True)],
            embeddings=embeddings,
            truncated=[not row or row[-1] not in end_ids for row in completion_ids],
        )
        bounds = [0]
        for part in parts:
            bounds.append(bounds[-1] + len(part.texts))
        return [written.rows(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _row_modes(self, parts: list[Part], batches: list[Any]) -> tuple[list[str], list[int]]:
        """Each row's pooled span and rationale budget, from its part's role mode and its text's length."""
        spans, budgets = [], []
        for part, batch in zip(parts, batches, strict=True):
            mode = self.args.grace_role_mode(part.role)
            suffix = len(self.embedder.templates[part.role].suffix_ids)
            for tokens in (batch.span_mask.sum(dim=1) - suffix).tolist():
                spans.append(mode.span_for(int(tokens)))
                budgets.append(mode.max_new_tokens or self.args.max_completion_length)
        return spans, budgets

    def _anchor_parts(self, examples: list[dict[str, str]], stream: torch.Generator | None) -> list[Part]:
        """One anchor per example and role; the query's and the negative's share a part when their prompts do."""
        settings = self.anchor_settings
        if self.args.objective == "unsupervised":
            return [Part([e["text"] for e in examples], "document", settings, stream)]
        queries, negatives = [e["query"] for e in examples], [e["negative"] for e in examples]
        same_mode = self.args.grace_role_mode("query") == self.args.grace_role_mode("document")
        if same_mode and self.embedder.templates["query"] == self.embedder.templates["document"]:
            return [Part(queries + negatives, "query", settings, stream)]
        return [Part(queries, "query", settings, stream), Part(negatives, "document", settings, stream)]

    def _anchor_outputs(self, written: list[Rationales], n: int) -> dict[str, Rationales]:
        if self.args.objective == "unsupervised":
            return {"anchor": written[0]}
        if len(written) == 1:
            return {"query": written[0].rows(0, n), "negative": written[0].rows(n, 2 * n)}
        return {"query": written[0], "negative": written[1]}

    def _vllm_rollouts(self, trainer: Any, policy: Any, texts: list[str], k: int, end_ids: list[int]) -> Rationales:
        """Rollouts from TRL's vLLM helper, embedded with one forward (GPU path; not run by the tests here)."""
        embedder = self.embedder
        prompt_ids = embedder.prompt_ids(texts, "document")
        _, completion_ids, logprobs, _ = trainer.vllm_generation.generate(
            prompts=prompt_ids, images=None, num_generations=k
        )
        completion_ids = [_cut_after_end(list(ids), end_ids) for ids in completion_ids]
        logprobs = [[lp[0] for lp in seq][: len(ids)] for seq, ids in zip(logprobs, completion_ids, strict=True)]
        return Rationales(
            prompt_ids=prompt_ids,
            completion_ids=completion_ids,
            logprobs=logprobs,
            embeddings=embedder.embed(policy, texts, "document", completion_ids),
            truncated=[not ids or ids[-1] not in end_ids for ids in completion_ids],
        )

    def _columns(
        self, rollouts: Rationales, anchors: dict[str, Rationales], k: int, first: int, seconds: dict[str, float]
    ) -> dict[str, Any]:
        rows = len(rollouts.prompt_ids)
        example = [i // k for i in range(rows)]
        templates = self.embedder.templates
        out: dict[str, Any] = {
            "prompt_ids": rollouts.prompt_ids,
            "completion_ids": rollouts.completion_ids,
            "logprobs": rollouts.logprobs,
            "grace_example": [first + j for j in example],
            "grace_embedding": list(rollouts.embeddings.unbind(0)),
            "grace_truncated": rollouts.truncated,
            "grace_prefix_len": [len(templates["document"].prefix_ids)] * rows,
            "grace_seconds": seconds,
        }
        for name, anchor in anchors.items():
            prefix = len(templates[ANCHOR_ROLES[name]].prefix_ids)
            out[f"grace_{name}_ids"] = [anchor.prompt_ids[j] + anchor.completion_ids[j] for j in example]
            out[f"grace_{name}_prompt_len"] = [len(anchor.prompt_ids[j]) for j in example]
            out[f"grace_{name}_prefix_len"] = [prefix] * rows
            out[f"grace_{name}_embedding"] = [anchor.embeddings[j] for j in example]
        return out


def _cut_after_end(ids: list[int], end_ids: Sequence[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in end_ids:
            return ids[: i + 1]
    return ids
