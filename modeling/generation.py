"""Batched rationale generation.

Greedy decoding is the default because an embedding must not change from one call to the next (the reference
samples at temperature 1.0 with no seed). Sampling stays available; with a ``seed`` it repeats for the same batch,
but only greedy vectors are independent of batch composition.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]


@dataclass(frozen=True)
class GenerationSettings:
    """How rationales are decoded.

    Attributes:
        max_new_tokens: cap on rationale length; a rationale cut here has no end token.
        do_sample: False for greedy (deterministic) decoding.
        temperature: sampling temperature; only used when ``do_sample``.
        top_p: nucleus sampling mass; only used when ``do_sample``.
        seed: seeds sampling so that the same call gives the same rationales; only used when ``do_sample``.
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):  # a string here would otherwise fail as "'>' not supported"
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise GraceUserError(f"{name} must be a number, got {value!r} (e.g. {name}=0.7).")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise GraceUserError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}.")
        if self.do_sample and not self.temperature > 0:
            raise GraceUserError(
                f"temperature must be > 0 when sampling, got {self.temperature!r}; use do_sample=False."
            )
        if not 0 < self.top_p <= 1:
            raise GraceUserError(f"top_p must be in (0, 1], got {self.top_p!r}.")


def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id that ends a rationale: the generation config's EOS ids and the tokenizer's EOS id."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise GraceUserError(
            "This backbone defines no end-of-sequence token (neither its generation config nor its tokenizer), so "
            "a rationale could never end. Set tokenizer.eos_token or generation_config.eos_token_id."
        )
    return sorted(ids)


def pad_token_id_for(tokenizer: Any, end_ids: list[int] | tuple[int, ...] = ()) -> int:
    """The id that pads prompts and finished rationales: the tokenizer's pad token, else its EOS, else an end id.

    Padding is always masked, so any id would give the same vectors; one rule keeps encoder, training rollouts and
    TRL's own padding on the same id (many causal LMs ship without a pad token).
    """
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, *end_ids):
        if candidate is not None:
            return int(candidate)
    raise GraceUserError(
        "This tokenizer has neither a pad nor an end-of-sequence token, so prompts cannot be padded. Set "
        "tokenizer.pad_token (or tokenizer.eos_token)."
    )


@contextmanager
def seeded_sampling(settings: GenerationSettings, device: torch.device) -> Iterator[None]:
    """Within the block, random draws start from ``settings.seed`` when sampling with a seed.

    With a seed, the draws come from a forked generator state, so a seeded encode neither depends on nor disturbs
    the caller's random stream. Without one, the caller's stream is used as it is and advances: repeated unseeded
    calls draw fresh numbers (forking there would replay the same draws on every call), and a training loop's stream,
    which the trainer checkpoints and restores on resume, decides every rollout.
    """
    if not (settings.do_sample and settings.seed is not None):
        yield
        return
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(settings.seed)
        yield


def generate_rationales(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: GenerationSettings,
    end_ids: list[int],
    pad_token_id: int,
) -> torch.Tensor:
    """Generate one rationale per left-padded prompt; returns the ``(B, G)`` generated ids, right-padded.

    A fresh :class:`~transformers.GenerationConfig` is used rather than the backbone's own, so sampling defaults
    shipped with a checkpoint (many instruct models set ``do_sample=True``) can never leak into greedy encoding.
    """
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        eos_token_id=end_ids,
        pad_token_id=pad_token_id,
        **({"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0} if settings.do_sample else {}),
    )
    with seeded_sampling(settings, input_ids.device):
        sequences = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
    return sequences[:, input_ids.shape[1] :]
