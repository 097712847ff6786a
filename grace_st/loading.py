"""Load a GRACE model from a folder or Hub id, or wrap a plain causal LM, with errors that say what to do."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from sentence_transformers import SentenceTransformer

from .backbones import BackboneNotFoundError
from .build import build_grace_model
from .errors import GraceUserError


def _is_grace(model: SentenceTransformer) -> bool:
    return len(model) > 0 and hasattr(model[0], "decode_rationale")


def load_grace_model(
    name_or_path: str | os.PathLike | None = None, *, device: str | None = None
) -> SentenceTransformer:
    """A GRACE model from ``name_or_path``.

    - ``None``: an untrained GRACE model on the embedded default backbone (built in memory).
    - a folder with ``modules.json``: a saved GRACE model, loaded with ``trust_remote_code=True``.
    - a folder with only ``config.json``, or a Hub causal LM: wrapped as an untrained GRACE model, with a note.
    - a Hub id with ``modules.json``: a published GRACE model.
    """
    if name_or_path is None:
        return build_grace_model(device=device)
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    if path.is_dir() and (path / "modules.json").exists():
        _check_json(path)
        model = SentenceTransformer(str(path), device=device, trust_remote_code=True)
    elif path.exists() or raw.startswith((".", "/", "~")):
        _note(f"'{raw}' is not a GRACE model folder (no modules.json); wrapping it as an untrained GRACE model.")
        return build_grace_model(raw, device=device)
    else:
        model = _load_from_hub(raw, device)
    if not _is_grace(model):
        raise ValueError(
            f"'{raw}' is a sentence-transformers model but not a GRACE model (its first module is "
            f"{type(model[0]).__name__}). Build one with `grace build OUT_DIR --backbone <causal LM>`."
        )
    return model


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


def _load_from_hub(repo_id: str, device: str | None) -> SentenceTransformer:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        hf_hub_download(repo_id, "modules.json")
    except RemoteEntryNotFoundError:  # the repo exists but holds no sentence-transformers model
        _note(f"'{repo_id}' has no modules.json; wrapping it as an untrained GRACE model.")
        return build_grace_model(repo_id, device=device)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, HTTP errors: all mean "cannot be had"
        raise BackboneNotFoundError.unreachable(repo_id, exc) from exc
    return SentenceTransformer(repo_id, device=device, trust_remote_code=True)


def _note(message: str) -> None:
    print(f"grace: {message}", file=sys.stderr)
