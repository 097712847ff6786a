"""GRACE text embeddings for sentence-transformers: a causal LM writes a rationale, then pools over it.

Importing ``grace_st`` is cheap: the public names below load their modules (and torch, transformers and
sentence-transformers) on first use. One thing happens at import, and only if mteb is already imported: the GRACE
models this project has released are registered with mteb (a dict insert, no I/O), so ``import mteb, grace_st``
makes ``mteb.get_model("<released GRACE id>")`` return a GRACE encoder.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, Any


__version__ = "0.2.0.dev0"

_EXPORTS = {
    "build_grace_model": "build",
    "save_grace_model": "build",
    "encode_with_rationales": "rationales",
    "encode_stream": "streaming",
    "load_grace_model": "loading",
    "GraceEncoding": "rationales",
    "RationaleGenerator": "rationale_generator",
    "GraceModelCardData": "model_card",
    "embedded_backbone_path": "backbones",
    "resolve_backbone": "backbones",
    "BackboneNotFoundError": "backbones",
    "EMBEDDED_BACKBONE_ID": "backbones",
    "load_mteb_model": "mteb_meta",
    "grace_model_meta": "mteb_meta",
    "register_grace_models": "mteb_meta",
    "GraceEncoder": "mteb_encoder",
    "push_grace_model": "push",
    "explain_match": "explain",
    "Explanation": "explain",
    "search_corpus": "search",
}

__all__ = [
    "EMBEDDED_BACKBONE_ID",
    "BackboneNotFoundError",
    "Explanation",
    "GraceEncoder",
    "GraceEncoding",
    "GraceModelCardData",
    "RationaleGenerator",
    "build_grace_model",
    "embedded_backbone_path",
    "encode_stream",
    "encode_with_rationales",
    "explain_match",
    "grace_model_meta",
    "load_mteb_model",
    "push_grace_model",
    "register_grace_models",
    "load_grace_model",
    "resolve_backbone",
    "save_grace_model",
    "search_corpus",
]

if TYPE_CHECKING:
    from .backbones import EMBEDDED_BACKBONE_ID, BackboneNotFoundError, embedded_backbone_path, resolve_backbone
    from .build import build_grace_model, save_grace_model
    from .explain import Explanation, explain_match
    from .loading import load_grace_model
    from .model_card import GraceModelCardData
    from .mteb_encoder import GraceEncoder
    from .mteb_meta import grace_model_meta, load_mteb_model, register_grace_models
    from .push import push_grace_model
    from .rationale_generator import RationaleGenerator
    from .rationales import GraceEncoding, encode_with_rationales
    from .search import search_corpus
    from .streaming import encode_stream


def __getattr__(name: str) -> Any:
    """Public names and submodules load on first use, so ``grace_st.streaming.encode_stream`` works after
    ``import grace_st`` as it would with an eager package."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if "mteb" in sys.modules:  # see the module docstring: registration only when the user already imported mteb
    importlib.import_module(".mteb_meta", __name__).register_grace_models()
