"""What of a GRACE folder may be published: an explicit list of files, no symlinks, and no local paths in the card.

Why a list and not "everything but checkpoints": an output folder collects things that were never meant for the Hub
(notes, logs, a data file copied in to train on, a symlink to a secret). The list is what a GRACE folder *is*: the
module's Python files, the backbone's weights and configs, the tokenizer, sentence-transformers' configs and module
folders, the card, ``train_summary.json`` and the card's plots. Anything else stays local, and the user is told.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from .errors import GraceUserError
from .model_ids import is_hub_id
from .train.curve_plot import LEARNING_CURVE_PNG


CHECKPOINTS = "checkpoints"  # TRL's checkpoints of `grace train`: optimizer states, never published
# The module's code, copied into every folder by grace_st.build (the one list of those files). Only files on public
# APIs travel: the single pass and the CPU kernels (transformers/torch internals) stay in the installed library,
# which the folder's module uses when it is there (tests/test_remote_code.py checks the imports).
MODULE_CODE_FILES = (
    "rationale_generator.py",
    "batching.py",
    "encode_io.py",
    "generation.py",
    "generation_path.py",
    "pooling.py",
    "prompts.py",
    "role_modes.py",
    "settings.py",
    "spans.py",
    "two_pass.py",
)
_ROOT_FILES = (
    # sentence-transformers and GRACE configs, the card and the training record
    "modules.json",
    "config_sentence_transformers.json",
    "grace_config.json",
    "README.md",
    "train_summary.json",
    LEARNING_CURVE_PNG,  # the card's plot
    # the backbone: config, generation config and safetensors weights (never pickles)
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-?????-of-?????.safetensors",
    # the tokenizer, in whichever of transformers' formats it was saved
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    *MODULE_CODE_FILES,
)
_MODULE_FOLDER_FILES = ("config.json", "model.safetensors")  # e.g. 1_Pooling/config.json


def _is_listed(relative: PurePosixPath, module_folders: set[str]) -> bool:
    if len(relative.parts) == 1:
        return any(fnmatch.fnmatchcase(relative.name, pattern) for pattern in _ROOT_FILES)
    return relative.parent.as_posix() in module_folders and relative.name in _MODULE_FOLDER_FILES


def publishable_files(folder: Path) -> tuple[list[PurePosixPath], list[PurePosixPath]]:
    """(files to upload, files left out) of the GRACE ``folder``, as paths relative to it.

    Hidden files and ``checkpoints/`` are neither. A symlink anywhere else is refused with a ``GraceUserError``: it
    could publish a file from outside the folder under an innocent name.
    """
    entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    module_folders = {str(entry.get("path")) for entry in entries if entry.get("path")}
    upload: list[PurePosixPath] = []
    left_out: list[PurePosixPath] = []
    for path in sorted(folder.rglob("*")):  # rglob does not descend into symlinked folders
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if relative.parts[0] == CHECKPOINTS or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_symlink():
            raise GraceUserError(
                f"Refusing to upload '{folder}': '{relative}' is a symbolic link (to '{os.readlink(path)}'), which "
                "could publish a file from outside the folder. Replace it with a copy of the file, or remove it."
            )
        if path.is_dir():
            continue
        (upload if _is_listed(relative, module_folders) else left_out).append(relative)
    return upload, left_out


def local_paths_in(text: str, folder: Path) -> list[str]:
    """Local paths of this machine that ``text`` mentions (the folder, the home, working and temporary folders)."""
    roots = {str(folder.resolve()), str(folder.resolve().parent), str(Path.home()), os.getcwd(), tempfile.gettempdir()}
    found = [root for root in sorted(roots) if len(root) > 1 and re.search(re.escape(root) + r"(?![\w.-])", text)]
    found += re.findall(r"\b[A-Za-z]:\\[^\s`'\")]+", text)  # Windows paths
    return found


def public_name(name: str | None) -> str | None:
    """``name`` as it may appear in a published card: a Hub id or ``grace:`` source as is, a local path by its last
    component only (``/home/me/data/triples.jsonl`` -> ``triples.jsonl``)."""
    if not name or name.startswith("grace:"):
        return name
    if not is_hub_id(name):
        return Path(name).name
    return name
