"""What a name or an object is: a local path or a Hub id, a GRACE model or folder, and a backbone's pad token.

One rule each, used everywhere a name or model is classified, so that the command line, the loaders, the card and
the uploader never disagree about the same string (they did, when six copies of "is this a Hub id" differed on
``gpt2`` or ``org/name/sub``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


GRACE_MODULE_SUFFIX = ".RationaleGenerator"
"""How ``modules.json`` names the GRACE module, whichever copy wrote it (``rationale_generator.`` or ``grace_st.``)."""


def is_local_path(name: str | os.PathLike) -> bool:
    """True for an existing path, or one that can only be meant as a path (``./x``, ``/x``, ``~/x``, ``a/b/c``)."""
    raw = str(name)
    return (
        Path(raw).expanduser().exists()
        or raw.startswith((".", "/", "~"))
        or raw.count("/") > 1
        or (os.sep != "/" and os.sep in raw)
    )


def is_hub_id(name: str | os.PathLike | None) -> bool:
    """True for a name the Hugging Face Hub may hold (``org/name``, or a legacy ``name``); not a path or built-in."""
    if name is None or not str(name).strip():
        return False
    return not str(name).startswith("grace:") and not is_local_path(name)


def is_grace_module_type(class_ref: str) -> bool:
    """True for a ``modules.json`` type that names the GRACE module."""
    return class_ref == "RationaleGenerator" or class_ref.endswith(GRACE_MODULE_SUFFIX)


def is_grace_folder(path: str | os.PathLike) -> bool:
    """True for a folder whose ``modules.json`` lists the GRACE module (read as data; nothing is imported)."""
    modules = Path(path) / "modules.json"
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(entries, list) and any(
        isinstance(entry, dict) and is_grace_module_type(str(entry.get("type", ""))) for entry in entries
    )


def is_grace_model(model: Any) -> bool:
    """True for a sentence-transformers model whose first module writes rationales (the library's or a folder's)."""
    try:
        first = model[0]
    except (TypeError, IndexError, KeyError):
        return False
    return hasattr(first, "decode_rationale") and hasattr(first, "end_ids")
