"""Encode texts as queries or as documents, the way sentence-transformers' ``encode_query``/``encode_document`` do.

``grace explain`` and ``grace search`` must explain and rank the very vectors a user gets from
``model.encode_query`` and ``model.encode_document``. Those two methods pick the model's stored prompt for the role
(for GRACE, the system instruction the rationale is written under) and pass ``task=role``; encoding through them,
rather than through a prompt chosen here, keeps this library's tools in step with any role-specific behaviour a
model defines. :func:`role_prompt` names the prompt string they pick, for what needs it outside the encode call:
the prompt template (which tokens are glue) and the encoding cache's key.
"""

from __future__ import annotations

from typing import Any, Literal

from sentence_transformers import SentenceTransformer

from .errors import GraceUserError
from .rationales import pooled_only


Role = Literal["query", "document"]
ROLES: tuple[str, ...] = ("query", "document")
_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}
"""The stored prompt names ``encode_query`` / ``encode_document`` look for, in their order."""


def role_prompt(model: SentenceTransformer, role: Role) -> str | None:
    """The prompt string that ``encode_query`` (``role="query"``) or ``encode_document`` encode with.

    ``None`` means no prompt: the GRACE module then writes the rationale under its own ``instruction``.
    """
    prompts = model.prompts or {}
    for name in _PROMPT_NAMES[role]:
        if name in prompts:
            return prompts[name]
    default = getattr(model, "default_prompt_name", None)
    return prompts.get(default) if default is not None else None


def encode_role(
    model: SentenceTransformer, texts: list[str], role: Role, *, batch_size: int = 16, token_states: bool = True
) -> list[dict[str, Any]]:
    """One output dict per text (``output_value=None``), encoded with ``encode_query`` or ``encode_document``.

    Each dict holds the module's per-token outputs (``token_embeddings``, ``attention_mask`` = pooled-span mask,
    ``input_ids``, ``rationale_ids``, ``rationale_mask``, ``prompt_span_mask``) and the ``sentence_embedding`` that
    ``encode_query``/``encode_document`` return for the text; ``token_states=False`` keeps only the last three
    (what a cache stores), so no text's per-token states outlive its batch.
    """
    if role not in ROLES:
        raise GraceUserError(f"role must be one of {ROLES}, got {role!r}.")
    encode = model.encode_query if role == "query" else model.encode_document
    extra = {} if token_states else pooled_only(model)
    return encode(texts, batch_size=batch_size, output_value=None, show_progress_bar=False, **extra)


def decode_rationale(model: SentenceTransformer, output: dict[str, Any]) -> str:
    """The rationale text of one :func:`encode_role` output (empty for the ``input`` span)."""
    return model[0].decode_rationale(output["rationale_ids"], output["rationale_mask"])
