"""Model-card data for GRACE models: sentence-transformers' card, with GRACE's template and tags.

sentence-transformers' default card tells users to load a model with ``SentenceTransformer("<id>")``, which fails
for GRACE (its module is custom code). The template in ``model_cards/`` shows ``trust_remote_code=True``, how to read
rationales, the encoding settings and the citation; everything else (YAML metadata, architecture string, widget
logic) is sentence-transformers' own machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformerModelCardData


def _template_path() -> Path:
    return Path(str(files("grace_st.model_cards").joinpath("grace_model_card.md")))


@dataclass
class GraceModelCardData(SentenceTransformerModelCardData):
    """Card data with GRACE's tags, license default, encoding settings and, after training, the training record."""

    grace_settings: dict[str, Any] = field(default_factory=dict)
    grace_training: dict[str, Any] = field(default_factory=dict)  # filled by `grace train`: config, rewards, scores
    grace_examples: list[dict[str, str]] = field(default_factory=list)  # texts with the trained model's rationales
    tags: list[str] | None = field(
        default_factory=lambda: ["sentence-transformers", "sentence-similarity", "feature-extraction", "grace"]
    )
    template_path: Path = field(default_factory=_template_path, init=False, repr=False)
