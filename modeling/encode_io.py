"""What a GRACE module accepts and what ``encode`` hands back: texts checked on the way in, per-token states
dropped on the way out when the caller needs only the vector and the rationale.

A saved GRACE folder carries this file, so both hold where the library is not installed.
"""

from __future__ import annotations

from typing import Any

import torch


try:
    from grace_st.errors import GraceUserError, GraceUserTypeError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError, GraceUserTypeError = ValueError, TypeError  # type: ignore[misc,assignment]


def check_texts(texts: list[Any]) -> None:
    """Reject inputs GRACE cannot embed, naming the value and the fix."""
    for text in texts:
        if not isinstance(text, str):
            raise GraceUserTypeError(
                f"GRACE encodes strings, but got {type(text).__name__} {text!r}. Convert it with str() or drop it "
                "before encoding."
            )
        if not text.strip():
            raise GraceUserError(
                f"GRACE cannot embed an empty or whitespace-only text ({text!r}): there is nothing to write a "
                "rationale about. Remove it or replace it with real text before encoding."
            )


POOLED_OUTPUTS = ("sentence_embedding", "rationale_ids", "rationale_mask")
"""What ``encode(..., output_value=None, token_states=False)`` keeps of each text's outputs."""


def keep_pooled_outputs(
    model: torch.nn.Module, args: tuple, kwargs: dict[str, Any], output: Any
) -> dict[str, torch.Tensor] | None:
    """Forward hook of the whole model: with ``token_states=False``, drop the per-token states after pooling.

    ``encode(..., output_value=None)`` keeps a view of every batch's ``token_embeddings`` ((prompt + rationale) x
    hidden floats a text) until the call returns, which is most of the memory of a large corpus; callers that need
    only the vector and the rationale pass ``token_states=False`` and get :data:`POOLED_OUTPUTS` instead. The hook
    runs after the last module, so ``Pooling``/``Normalize`` saw the states and the vector is unchanged. A
    module-level function, so a model with the hook still pickles (multi-process encoding).
    """
    if kwargs.get("token_states", True) or not isinstance(output, dict):
        return None
    return {key: output[key] for key in POOLED_OUTPUTS if key in output}
