"""Publish a saved GRACE model folder to the Hugging Face Hub (``grace push`` and ``push_to_hub`` after training).

What is uploaded, in one commit with huggingface_hub's own ``create_repo`` / ``create_commit``, is the explicit
list of files a GRACE folder is made of (:mod:`grace_st.published_files`): the module's Python files, weights,
tokenizer, configs, ``train_summary.json``, the card and its plots. Unlike a plain ``upload_folder``: TRL's
``checkpoints/`` and any other file stay local (named in a warning), a symlink refuses the upload, a card that
mentions a local path refuses it, and the card's usage snippet gets the real repo id in place of its local
placeholder. Nothing local is changed, so a failed upload can simply be retried.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi

from .errors import GraceFileNotFoundError, GraceUserError
from .model_ids import is_grace_folder
from .published_files import local_paths_in, publishable_files


CARD_PLACEHOLDER = "path/to/this-model"
logger = logging.getLogger(__name__)


class PushError(GraceUserError, RuntimeError):
    """The upload failed; the message says the local folder is intact and how to retry."""


def check_grace_folder(folder: str | os.PathLike) -> Path:
    """``folder`` as a Path if it is a saved GRACE model, else a ``ValueError`` naming what is missing."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise GraceFileNotFoundError(
            f"No such folder: '{path}'. Pass the output folder of `grace train` or `grace build`."
        )
    modules = path / "modules.json"
    if not modules.is_file():
        raise GraceUserError(f"'{path}' is not a sentence-transformers model folder (no modules.json).")
    if not is_grace_folder(path):
        raise GraceUserError(f"'{path}' is a sentence-transformers model but not a GRACE one (no RationaleGenerator).")
    if not (path / "README.md").is_file():
        raise GraceUserError(f"'{path}' has no README.md model card. Re-save it with grace_st.save_grace_model.")
    return path


def _operations(folder: Path, repo_id: str) -> list[CommitOperationAdd]:
    upload, left_out = publishable_files(folder)
    if left_out:
        logger.warning(
            "grace push: not uploading %s (not part of a GRACE model folder; they stay local).",
            ", ".join(str(name) for name in left_out),
        )
    operations = []
    for relative in upload:
        file = folder / relative
        if relative.as_posix() == "README.md":
            card = file.read_text(encoding="utf-8")
            leaked = local_paths_in(card, folder)
            if leaked:
                raise GraceUserError(
                    f"Refusing to upload '{folder}': its README.md mentions local paths {leaked}. Replace them "
                    "(with a Hub id or a plain name) in the card, then push again."
                )
            card = card.replace(CARD_PLACEHOLDER, repo_id)
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
        raise GraceUserError(f"repo_id={repo_id!r} must look like 'org-or-user/model-name'.")
    operations = _operations(path, repo_id)  # refusals (symlinks, local paths) before anything is sent
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.create_commit(repo_id, operations, commit_message=commit_message, create_pr=create_pr)
    except Exception as exc:  # noqa: BLE001 - network, auth and Hub errors all end the same way for the user
        raise PushError(
            f"Uploading '{path}' to the Hub repo '{repo_id}' failed: {type(exc).__name__}: {exc}. The local model "
            f"is unchanged; check your token (`hf auth login` or HF_TOKEN) and network, then retry with "
            f"`grace push {path} {repo_id}`."
        ) from exc
    return commit.pr_url if create_pr and commit.pr_url else commit.commit_url
