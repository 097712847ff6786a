"""Model-side logic of GRACE, shared by inference (``grace_st``) and training.

Every file in this package imports its siblings with flat relative imports (``from .spans import ...``) and
nothing but ``torch`` and ``transformers`` otherwise. That is what lets the same files travel inside a saved model
folder as sentence-transformers "remote code", so a GRACE model loads where this library is not installed.
The package is installed as ``grace_st.modeling`` (see ``pyproject.toml``), never as a top-level ``modeling``.
"""

from __future__ import annotations

from .batching import DEFAULT_TOKEN_BUDGET, generate_packed, pack_by_token_budget
from .generation import GenerationSettings, end_token_ids, generate_rationales
from .pooling import embed_sequences, masked_mean, position_ids_from_mask, select_hidden_states
from .prompts import DEFAULT_INSTRUCTION, PromptBatch, PromptTemplate, build_prompt_batch, template_for
from .single_pass import generate_with_hidden_states
from .spans import SPANS, pooled_span_mask, rationale_mask
from .two_pass import GeneratedBatch, generate_then_embed


__all__ = [
    "DEFAULT_INSTRUCTION",
    "DEFAULT_TOKEN_BUDGET",
    "SPANS",
    "GeneratedBatch",
    "GenerationSettings",
    "PromptBatch",
    "PromptTemplate",
    "build_prompt_batch",
    "embed_sequences",
    "end_token_ids",
    "generate_packed",
    "generate_rationales",
    "generate_then_embed",
    "generate_with_hidden_states",
    "masked_mean",
    "pack_by_token_budget",
    "pooled_span_mask",
    "position_ids_from_mask",
    "rationale_mask",
    "select_hidden_states",
    "template_for",
]
