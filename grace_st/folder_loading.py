"""Load a saved GRACE folder or Hub repo with the installed module class, executing none of its Python files.

A GRACE folder carries a copy of its module's code (``rationale_generator.py`` and the ``modeling`` files it
imports) so that plain ``SentenceTransformer(folder, trust_remote_code=True)`` works without this library. With the
library installed that code is not needed: the module class is here, and everything else in the folder is data
(settings, weights, tokenizer). Executing the folder's files would run whatever was added to them, as the user.

sentence-transformers has no public switch for "resolve this type to that class", so the model is built from its
modules the way its own loader does, with its public pieces: ``modules.json`` read with ``load_file_path``, each
module's ``load`` classmethod (RationaleGenerator for the GRACE module, sentence-transformers' own classes for the
rest), and ``config_sentence_transformers.json``'s prompts, default prompt name and similarity function passed to
the ``SentenceTransformer`` constructor. A type outside these is third-party code and needs ``trust_remote_code``;
the same flag reaches the backbone (a causal LM with custom code).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.util import check_version_requirements, import_from_string, import_module_class
from sentence_transformers.util import load_file_path as st_load_file_path

from .errors import GraceUserError
from .model_card import GraceModelCardData
from .model_ids import is_grace_module_type
from .rationale_generator import RationaleGenerator


TRUST_HINT = (
    "Pass trust_remote_code=True (`--trust-remote-code` on the command line) only if you have read that code and "
    "trust it."
)


def _module_class(class_ref: str, location: str, trust_remote_code: bool, hub: dict[str, Any]) -> type:
    """The class of one ``modules.json`` entry: ours, sentence-transformers' own, or (only if trusted) the folder's."""
    if is_grace_module_type(class_ref):
        return RationaleGenerator
    if class_ref.startswith("sentence_transformers."):
        return import_from_string(class_ref)  # the installed package, not the folder
    if not trust_remote_code:
        raise GraceUserError(
            f"'{location}' lists the module class {class_ref!r} in modules.json, which is neither GRACE's nor part "
            f"of sentence-transformers: loading it executes code from the model's files. {TRUST_HINT}"
        )
    return import_module_class(class_ref, model_name_or_path=location, trust_remote_code=True, **hub)


def _read_json(location: str, filename: str, hub: dict[str, Any], required: bool) -> Any:
    path = st_load_file_path(location, filename, **hub)
    if path is None:
        if required:
            raise GraceUserError(f"'{location}' has no {filename}; it is not a sentence-transformers model.")
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _check_module_path(location: str, path: Any) -> str:
    """A module's folder from ``modules.json``: relative, inside the model (no ``..``, no root)."""
    if not isinstance(path, str) or any(p.is_absolute() or ".." in p.parts for p in _pure(path)) or "\0" in path:
        raise GraceUserError(
            f"modules.json of '{location}' names the module folder {path!r}; it must be a relative path inside the "
            "model. Re-save the model with grace_st.save_grace_model."
        )
    return path


def _pure(path: str) -> tuple[PurePosixPath, PureWindowsPath]:
    return PurePosixPath(path), PureWindowsPath(path)


def load_grace_folder(
    location: str,
    *,
    device: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    token: bool | str | None = None,
    cache_folder: str | None = None,
    local_files_only: bool = False,
    model_kwargs: dict[str, Any] | None = None,
) -> SentenceTransformer:
    """The GRACE model at ``location`` (a folder or Hub id with ``modules.json``), none of its files executed.

    Same modules, weights, prompts, default prompt name, similarity function and card text as
    ``SentenceTransformer(location, trust_remote_code=True)`` gives, but the GRACE module is this library's
    ``RationaleGenerator``. ``trust_remote_code`` is needed only for a backbone with custom code or a module type
    that is neither GRACE's nor sentence-transformers'.
    """
    hub = dict(token=token, cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
    entries = _read_json(location, "modules.json", hub, required=True)
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise GraceUserError(f"modules.json of '{location}' must be a non-empty list of modules.")
    first = str(entries[0].get("type", ""))
    if not is_grace_module_type(first):
        raise GraceUserError(
            f"'{location}' is a sentence-transformers model but not a GRACE model (its first module is {first!r}). "
            "Build one with `grace build OUT_DIR --backbone <causal LM>`."
        )
    config = _read_json(location, "config_sentence_transformers.json", hub, required=False) or {}
    check_version_requirements(config.get("requirements"), source=location)
    modules: OrderedDict[str, Any] = OrderedDict()
    module_kwargs: OrderedDict[str, Any] = OrderedDict()
    for entry in entries:
        cls = _module_class(str(entry.get("type", "")), location, trust_remote_code, hub)
        subfolder = _check_module_path(location, entry.get("path", ""))
        modules[str(entry["name"])] = cls.load(
            location,
            subfolder=subfolder,
            **hub,
            trust_remote_code=trust_remote_code,
            model_kwargs=dict(model_kwargs or {}),
            backend="torch",
        )
        module_kwargs[str(entry["name"])] = entry.get("kwargs", [])
    generator = modules[str(entries[0]["name"])]
    settings = {k: v for k, v in generator.get_config_dict().items() if k != "instruction"}
    card = GraceModelCardData(local_files_only=True, generate_widget_examples=False, grace_settings=settings)
    model = SentenceTransformer(
        modules=modules,
        device=device,
        prompts=config.get("prompts") or None,
        default_prompt_name=config.get("default_prompt_name"),
        similarity_fn_name=config.get("similarity_fn_name"),
        model_card_data=card,
    )
    model.module_kwargs = module_kwargs  # modules.json's per-module forward kwargs, as its own loader keeps them
    readme = st_load_file_path(location, "README.md", **hub)
    if readme is not None:  # saving this model again keeps its card, as a model loaded by sentence-transformers does
        with open(readme, encoding="utf-8") as handle:
            model._model_card_text = handle.read()  # no public setter; read back by sentence-transformers' save
    return model
