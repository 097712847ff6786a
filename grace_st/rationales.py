"""Each text's rationale next to its embedding, in one call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

from .errors import GraceUserTypeError
from .model_ids import is_grace_model


_ROLE_PROMPT_NAMES = ("query", "document", "passage", "corpus")
"""Prompt names that also name a role (sentence-transformers' ``encode_query`` / ``encode_document`` names)."""

CHUNK_TEXTS = 256
"""Texts per ``model.encode`` call: per-token hidden states (``token_embeddings``, ~(prompt + rationale) x hidden
floats a text) are kept for one chunk only, so memory does not grow with the number of texts."""


@dataclass
class GraceEncoding:
    """One encoded text.

    Attributes:
        text: the input text.
        rationale: what the model wrote about it (empty for the ``input`` span, which generates nothing).
        embedding: the L2-normalised vector, the same as ``model.encode(text)`` gives.
    """

    text: str
    rationale: str
    embedding: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "rationale": self.rationale, "embedding": self.embedding.tolist()}


def pooled_only(model: SentenceTransformer) -> dict[str, bool]:
    """``encode`` kwargs that keep only each text's vector and rationale ids (no per-token states), where the
    model's module offers the option (a folder's older module copy does not; its states then live for one chunk)."""
    return {"token_states": False} if "token_states" in model.get_model_kwargs() else {}


def refilled(model: SentenceTransformer, batch_size: int, texts: int) -> dict[str, int]:
    """``encode`` kwargs that decode ``batch_size`` rows at a time over the whole chunk of ``texts`` texts.

    The chunk goes to the model as one batch and the module keeps ``batch_size`` rationales in flight, refilling
    finished rows with the next texts (``modeling/refill.py``), so decode steps stay full instead of shrinking as
    rationales end. A folder's older module copy has no such option: it gets ``batch_size`` as before.
    """
    if "decode_rows" not in model.get_model_kwargs():
        return {"batch_size": batch_size}
    return {"batch_size": max(batch_size, texts), "decode_rows": batch_size}


def encode_with_rationales(
    model: SentenceTransformer,
    texts: list[str],
    *,
    prompt_name: str | None = None,
    prompt: str | None = None,
    task: str | None = None,
    batch_size: int = 16,
    show_progress_bar: bool | None = None,
    pool: dict[str, Any] | None = None,
) -> list[GraceEncoding]:
    """Encode ``texts`` with a GRACE model and return each text's rationale and embedding.

    It is ``model.encode(texts, output_value=None, token_states=False)`` plus decoding of the generated ids, so the
    vectors are exactly those of ``model.encode``; the module hands back only the pooled vector and the rationale
    ids (no per-token hidden states), and texts go :data:`CHUNK_TEXTS` at a time, so memory does not grow with the
    number of texts. (Greedy rationales do not depend on the chunking; sampled ones, like ``encode``'s own, depend
    on which texts share a batch.) ``prompt_name="query"`` / ``"document"`` select the stored prompts and, unless
    ``task`` says otherwise, the role mode, as ``encode_query`` / ``encode_document`` do (``grace encode
    --prompt-name query`` encodes queries); ``task=None`` with any other prompt name: the model's default role.
    ``pool``: a pool from ``model.start_multi_process_pool(devices)``
    spreads each chunk over its processes (sentence-transformers' multi-process encoding; same vectors).
    """
    generator = model[0]
    if not is_grace_model(model):
        raise GraceUserTypeError(
            f"encode_with_rationales needs a GRACE model (first module RationaleGenerator), got a model whose first "
            f"module is {type(generator).__name__}. Build one with grace_st.build_grace_model or `grace build`."
        )
    if isinstance(texts, str):
        texts = [texts]
    if task is None and prompt_name in _ROLE_PROMPT_NAMES:
        task = prompt_name
    chunk = max(CHUNK_TEXTS, batch_size)
    encoded: list[GraceEncoding] = []
    for start in range(0, len(texts), chunk):
        part = list(texts[start : start + chunk])
        per_call = _pool_chunk(len(part), pool)  # texts per worker task; None: one process takes the whole part
        outputs = model.encode(
            part,
            prompt_name=prompt_name,
            prompt=prompt,
            show_progress_bar=show_progress_bar,
            output_value=None,
            pool=pool,
            chunk_size=per_call,
            task=task,
            **pooled_only(model),
            **refilled(model, batch_size, per_call or len(part)),
        )
        encoded += [
            GraceEncoding(
                text=text,
                rationale=generator.decode_rationale(out["rationale_ids"], out["rationale_mask"]),
                embedding=out["sentence_embedding"].float().cpu().numpy(),
            )
            for text, out in zip(part, outputs, strict=True)
        ]
    return encoded


def _pool_chunk(texts: int, pool: dict[str, Any] | None) -> int | None:
    """Texts per worker task: an even share of the chunk for each process (sentence-transformers' default would cut
    a 256-text chunk into tasks of 7 texts, each a batch of its own)."""
    if pool is None:
        return None
    return max(1, -(-texts // len(pool["processes"])))
