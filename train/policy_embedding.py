"""GRACE embeddings of given rationales with one forward of the policy: for rationales written elsewhere (vLLM).

The single pass (``rollouts.py``) embeds the rationales it writes itself. Rationales generated elsewhere (TRL's vLLM
helper) are embedded here with one no-grad forward. The reward must score a rationale with the very vector the saved
model would produce for it, so every piece here is the encoder's own: ``build_prompt_batch`` (same template, same
truncation), ``pooled_span_mask`` and ``embed_sequences`` (same hidden states, same masked mean, same normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..modeling.generation import pad_token_id_for
from ..modeling.pooling import embed_sequences
from ..modeling.prompts import PromptTemplate, build_prompt_batch, template_for
from ..modeling.spans import pooled_span_mask


def decoder_of(model: Any) -> Any:
    """The causal LM under a PEFT wrapper (LoRA layers stay active in it); the model itself otherwise."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class PolicyEmbedder:
    """The encoder's prompts for each role, and embeddings of texts with given rationales under the current weights.

    Args:
        tokenizer: the backbone's tokenizer.
        prompts: system prompt per role (``"query"``, ``"document"``).
        max_input_tokens: texts are cut to this many tokens before templating.
        span / layer: the pooled span and hidden-state layer (the encoder's ``span`` / ``layer``).
        batch_size: sequences per forward pass (bounds memory; results do not depend on it).
    """

    def __init__(
        self,
        tokenizer: Any,
        prompts: dict[str, str],
        max_input_tokens: int,
        span: str = "input_and_rationale",
        layer: int = -1,
        batch_size: int = 16,
    ) -> None:
        self.tokenizer = tokenizer
        self.templates: dict[str, PromptTemplate] = {role: template_for(tokenizer, p) for role, p in prompts.items()}
        self.max_input_tokens, self.span, self.layer, self.batch_size = max_input_tokens, span, layer, batch_size
        self.pad_token_id = pad_token_id_for(tokenizer)

    def prompt_ids(self, texts: Sequence[str], role: str) -> list[list[int]]:
        """Unpadded prompt token ids, exactly as the encoder builds them."""
        batch = build_prompt_batch(self.tokenizer, self.templates[role], list(texts), self.max_input_tokens, 0)
        return [row[mask.bool()].tolist() for row, mask in zip(batch.input_ids, batch.attention_mask, strict=True)]

    @torch.no_grad()
    def embed(self, model: Any, texts: Sequence[str], role: str, rationales: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(N, H)`` L2-normalised embeddings of each text followed by its rationale token ids."""
        decoder, device = decoder_of(model), next(model.parameters()).device
        was_training = decoder.training
        decoder.eval()  # no dropout in a vector that scores a rationale
        try:
            chunks = [
                self._embed_chunk(decoder, texts[i : i + self.batch_size], role, rationales[i : i + self.batch_size])
                for i in range(0, len(texts), self.batch_size)
            ]
        finally:
            decoder.train(was_training)
        return torch.cat(chunks).to(device)

    def _embed_chunk(
        self, decoder: Any, texts: Sequence[str], role: str, rationales: Sequence[Sequence[int]]
    ) -> torch.Tensor:
        device = next(decoder.parameters()).device
        prompt = build_prompt_batch(
            self.tokenizer, self.templates[role], list(texts), self.max_input_tokens, self.pad_token_id
        )
        width = max(1, max(len(r) for r in rationales))
        rationale_ids = torch.full((len(texts), width), self.pad_token_id, dtype=torch.long)
        completion_mask = torch.zeros((len(texts), width), dtype=torch.long)
        for i, ids in enumerate(rationales):  # from lengths, not from ids: the pad id may equal the end id
            rationale_ids[i, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
            completion_mask[i, : len(ids)] = 1
        input_ids = torch.cat([prompt.input_ids, rationale_ids], 1)
        attention = torch.cat([prompt.attention_mask, completion_mask], 1)
        span = pooled_span_mask(prompt.span_mask, completion_mask, self.span)
        return embed_sequences(decoder, input_ids.to(device), attention.to(device), span.to(device), self.layer)
