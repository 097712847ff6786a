"""mteb ``ModelMeta`` for GRACE models, and their registration so ``mteb.get_model(name)`` returns a GraceEncoder.

mteb resolves a name through its registry (a dict filled from its own model files) and otherwise asks the Hub,
which picks the plain sentence-transformers wrapper without ``trust_remote_code`` and, for a local folder, fails.
So a GRACE model is made known by putting a ``ModelMeta`` with a GRACE loader into that registry:

- :func:`load_mteb_model` (a local folder or Hub id) builds the meta from the model's own files, registers it and
  returns the encoder;
- :func:`register_grace_models` registers the metas in :data:`KNOWN_MODELS` (the project's released models).
  ``import grace_st`` calls it when mteb is already imported (a dict insert, no I/O); otherwise call it yourself.
"""

from __future__ import annotations

import json
import os
import struct
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from mteb.models import ModelMeta
from mteb.models.model_implementations import MODEL_REGISTRY
from mteb.models.model_meta import ScoringFunction

from .errors import GraceUserError
from .model_ids import is_grace_folder
from .mteb_encoder import GraceEncoder, revision_with_modes


GRACE_CITATION = """@inproceedings{sun2026grace,
  title     = {GRACE: Generative Representation Learning via Contrastive Policy Optimization},
  author    = {Sun, Jiashuo and others},
  booktitle = {International Conference on Learning Representations},
  year      = {2026},
  url       = {https://arxiv.org/abs/2510.04506}
}"""
REFERENCE = "https://arxiv.org/abs/2510.04506"
KNOWN_MODELS: dict[str, dict[str, Any]] = {}  # hub id -> ModelMeta fields; filled when a model is released


def _grace_loader(model_name: str, revision: str | None = None, device: str | None = None, **kwargs: Any):
    location = kwargs.pop("path", model_name)
    return GraceEncoder(location, revision=revision, device=device, **kwargs)


def _card_metadata(folder: Path) -> dict[str, Any]:
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    import yaml

    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    return yaml.safe_load(text.split("---")[1]) or {}


def _count_parameters(folder: Path) -> int | None:
    """Parameters of the weights in ``folder``, read from the safetensors headers (no tensor is loaded)."""
    total = 0
    files = list(folder.glob("*.safetensors"))
    for file in files:
        with open(file, "rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for size in info["shape"]:
                    count *= size
                total += count
    return total or None


def grace_model_meta(folder: str | os.PathLike, name: str | None = None, revision: str | None = None) -> ModelMeta:
    """A ``ModelMeta`` for the saved GRACE model in ``folder`` (from its configs, weights headers and card)."""
    path = Path(folder).expanduser().resolve()
    figures = _folder_figures(path)
    return hub_model_meta(
        name or f"local/{path.name}",
        loader=partial(_grace_loader, path=str(path)),
        revision=revision_with_modes(revision or "local", _settings(path)),
        release_date=date.today().isoformat(),
        **figures,
    )


def _settings(path: Path) -> dict[str, Any]:
    """The folder's saved module settings (``grace_config.json``), which name its per-role modes if it has any."""
    return json.loads((path / "grace_config.json").read_text(encoding="utf-8"))


def _folder_figures(path: Path) -> dict[str, Any]:
    """The ``ModelMeta`` fields a saved GRACE folder (local, or a Hub snapshot) tells: size, dimension, license."""
    if not is_grace_folder(path):
        raise GraceUserError(
            f"'{path}' is not a GRACE model folder (no modules.json with a RationaleGenerator). Pass a folder written "
            "by `grace build` or `grace train`."
        )
    grace = json.loads((path / "grace_config.json").read_text(encoding="utf-8"))
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    card = _card_metadata(path)
    parameters = _count_parameters(path)
    return dict(
        n_parameters=parameters,
        memory_usage_mb=round(parameters * 4 / 2**20, 1) if parameters else None,
        max_tokens=grace.get("max_input_tokens") or config.get("max_position_embeddings"),
        embed_dim=config.get("hidden_size"),
        license=card.get("license"),
        adapted_from=card.get("base_model") if isinstance(card.get("base_model"), str) else None,
    )


def hub_snapshot_meta(repo_id: str, revision: str | None = None, token: bool | str | None = None) -> ModelMeta:
    """A ``ModelMeta`` for a GRACE model on the Hub, its figures read from the downloaded snapshot (the weights are
    needed to evaluate it anyway; huggingface_hub's cache serves a second call, and offline mode)."""
    from huggingface_hub import snapshot_download

    from .backbones import BackboneNotFoundError

    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, token=token))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, HTTP errors: all mean "cannot be had"
        raise BackboneNotFoundError.unreachable(repo_id, exc) from exc
    figures = _folder_figures(snapshot)
    return hub_model_meta(repo_id, revision=revision_with_modes(snapshot.name, _settings(snapshot)), **figures)


def register(meta: ModelMeta) -> ModelMeta:
    """Put ``meta`` into mteb's registry (mteb has no public API for it; its registry is a plain dict)."""
    MODEL_REGISTRY[meta.name] = meta
    return meta


def load_mteb_model(
    name_or_path: str | os.PathLike, name: str | None = None, revision: str | None = None, **kwargs: Any
) -> GraceEncoder:
    """The mteb encoder of a GRACE folder or Hub id, registered under ``name`` so ``mteb.get_model(name)`` works.

    A Hub id is downloaded first (or read from the cache) so its meta carries the same figures as a folder's:
    parameters, embedding dimension, the commit evaluated.
    """
    import mteb

    path = Path(name_or_path).expanduser()
    if path.exists():
        meta = register(grace_model_meta(path, name, revision))
    else:
        meta = hub_snapshot_meta(str(name_or_path), revision=revision)
        meta = register(meta.model_copy(update={"name": name}) if name else meta)
    return mteb.get_model(meta.name, **kwargs)


def hub_model_meta(repo_id: str, **fields: Any) -> ModelMeta:
    """A ``ModelMeta`` for a GRACE model; ``fields`` override the defaults (unknown figures stay None)."""
    defaults: dict[str, Any] = dict(
        loader=_grace_loader,
        name=repo_id,
        revision=None,
        release_date=None,
        languages=None,
        n_parameters=None,
        memory_usage_mb=None,
        max_tokens=None,
        embed_dim=None,
        license=None,
        open_weights=True,
        public_training_code="https://github.com/GasolSun36/GRACE",
        public_training_data=None,
        framework=["Sentence Transformers", "PyTorch"],
        reference=REFERENCE,
        similarity_fn_name=ScoringFunction.COSINE,
        use_instructions=True,
        training_datasets=set(),
        citation=GRACE_CITATION,
    )
    return ModelMeta(**{**defaults, **fields})


def register_grace_models() -> None:
    """Register every model in :data:`KNOWN_MODELS` with mteb."""
    for repo_id, fields in KNOWN_MODELS.items():
        register(hub_model_meta(repo_id, **fields))
