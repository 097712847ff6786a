"""Load a GRACE model from a folder or Hub id, or wrap a plain causal LM, with errors that say what to do.

A saved GRACE model is loaded with the installed module class and none of its Python files executed (see
:mod:`grace_st.folder_loading`). Code from a model's files runs only when the caller passes
``trust_remote_code=True``, which is needed for a backbone with custom code.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from .backbones import BackboneNotFoundError
from .build import build_grace_model
from .errors import GraceUserError
from .folder_loading import TRUST_HINT, load_grace_folder
from .model_ids import is_local_path


logger = logging.getLogger(__name__)


def load_grace_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    token: bool | str | None = None,
) -> SentenceTransformer:
    """A GRACE model from ``name_or_path``.

    - ``None``: an untrained GRACE model on the embedded default backbone (built in memory).
    - a folder with ``modules.json``: a saved GRACE model, loaded without executing its files.
    - a folder with only ``config.json``, or a Hub causal LM: wrapped as an untrained GRACE model, with a note.
    - a Hub id with ``modules.json``: a published GRACE model, loaded without executing its files.

    ``trust_remote_code=True`` lets a backbone with custom code (or a module type that is neither GRACE's nor
    sentence-transformers') run that code; without it such a model is refused with an error that says so.
    """
    if name_or_path is None:
        return build_grace_model(device=device)
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    options = dict(device=device, trust_remote_code=trust_remote_code, revision=revision, token=token)
    if path.is_dir() and (path / "modules.json").exists():
        _check_json(path)
        return _consented(raw, trust_remote_code, lambda: load_grace_folder(str(path), **options))
    if is_local_path(raw):
        _note(f"'{raw}' is not a GRACE model folder (no modules.json); wrapping it as an untrained GRACE model.")
        return _consented(raw, trust_remote_code, lambda: _wrap(raw, device, trust_remote_code))
    return _load_from_hub(raw, options)


def _wrap(backbone: str, device: str | None, trust_remote_code: bool) -> SentenceTransformer:
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    return build_grace_model(backbone, device=device, model_kwargs=remote or None, processor_kwargs=remote or None)


def _consented(name: str, trust_remote_code: bool, load: Any) -> SentenceTransformer:
    """Run ``load``; transformers' "needs trust_remote_code" refusal becomes a one-line user error naming the flag."""
    try:
        return load()
    except GraceUserError:
        raise
    except ValueError as exc:
        if trust_remote_code or "trust_remote_code" not in str(exc):
            raise
        raise GraceUserError(
            f"'{name}' needs to run code from its own files (a custom backbone). {TRUST_HINT}"
        ) from exc


def _check_json(folder: Path) -> None:
    """Name the file when a saved folder's settings are not valid JSON (the loaders would not say which)."""
    for name in ("modules.json", "grace_config.json", "config_sentence_transformers.json"):
        file = folder / name
        if not file.is_file():
            continue
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GraceUserError(
                f"'{file}' is not valid JSON ({exc}). Fix the file, or save the model again (grace build)."
            ) from exc


def _load_from_hub(repo_id: str, options: dict[str, Any]) -> SentenceTransformer:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        hf_hub_download(repo_id, "modules.json", revision=options["revision"], token=options["token"])
    except RemoteEntryNotFoundError:  # the repo exists but holds no sentence-transformers model
        _note(f"'{repo_id}' has no modules.json; wrapping it as an untrained GRACE model.")
        trust = options["trust_remote_code"]
        return _consented(repo_id, trust, lambda: _wrap(repo_id, options["device"], trust))
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, HTTP errors: all mean "cannot be had"
        raise BackboneNotFoundError.unreachable(repo_id, exc) from exc
    return _consented(repo_id, options["trust_remote_code"], lambda: load_grace_folder(repo_id, **options))


def _note(message: str) -> None:
    logger.info(message)
