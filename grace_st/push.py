"""Publish a saved GRACE model folder to the Hugging Face Hub (``grace push`` and ``push_to_hub`` after training).

The folder is uploaded as it is, in one commit, with huggingface_hub's own ``create_repo`` / ``create_commit``:
the module's Python files, weights, tokenizer, configs, ``train_summary.json`` and the card. Two things differ from a
plain ``upload_folder``: TRL's ``checkpoints/`` (optimizer states, often larger than the model) stay local, and the
card's usage snippet gets the real repo id in place of its local placeholder. Nothing local is changed, so a failed
upload can simply be retried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi


CARD_PLACEHOLDER = "path/to/this-model"
_SKIPPED_DIRS = ("checkpoints",)


class PushError(RuntimeError):
    """The upload failed; the message says the local folder is intact and how to retry."""


def check_grace_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a Path if it is a saved GRACE model, else a ``ValueError`` naming what is missing."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"No such folder: '{path}'. Pass the output folder of `grace train` or `grace build`.")
    modules = path / "modules.json"
    if not modules.is_file():
        raise ValueError(f"'{path}' is not a sentence-transformers model folder (no modules.json).")
    entries = json.loads(modules.read_text(encoding="utf-8"))
    if not any(str(entry.get("type", "")).endswith("RationaleGenerator") for entry in entries):
        raise ValueError(f"'{path}' is a sentence-transformers model but not a GRACE one (no RationaleGenerator).")
    if not (path / "README.md").is_file():
        raise ValueError(f"'{path}' has no README.md model card. Re-save it with grace_st.save_grace_model.")
    return path


def _operations(folder: Path, repo_id: str) -> list[CommitOperationAdd]:
    operations = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if not file.is_file() or relative.parts[0] in _SKIPPED_DIRS or any(p.startswith(".") for p in relative.parts):
            continue
        if relative.as_posix() == "README.md":
            card = file.read_text(encoding="utf-8").replace(CARD_PLACEHOLDER, repo_id)
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
        else:
            operations.append(CommitOperationAdd(path_in_repo=relative.as_posix(), path_or_fileobj=str(file)))
    return operations


def push_grace_model(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload GRACE model",
    create_pr: bool = False,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` in one commit; returns the commit URL."""
    path = check_grace_folder(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id={repo_id!r} must look like 'org-or-user/model-name'.")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(
            repo_id, _operations(path, repo_id), commit_message=commit_message, create_pr=create_pr
        )
    except Exception as exc:  # noqa: BLE001 - network, auth and Hub errors all end the same way for the user
        raise PushError(
            f"Uploading '{path}' to the Hub repo '{repo_id}' failed: {type(exc).__name__}: {exc}. The local model "
            f"is unchanged; check your token (`hf auth login` or HF_TOKEN) and network, then retry with "
            f"`grace push {path} {repo_id}`."
        ) from exc
    return commit.pr_url if create_pr and commit.pr_url else commit.commit_url
