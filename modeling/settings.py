"""The saved settings of a GRACE module (``grace_config.json``): which keys exist, their types, and how they are read.

Why a schema and not ``cls(**config)``: the file is data that arrives with a downloaded model, and the constructor
also takes run-time options (``token_budget`` caps memory, ``model_kwargs`` reaches ``from_pretrained``) that a
folder must not be able to set. So only the keys below are read, each checked against its type (``bool`` is not
accepted where an integer or a float is meant, although Python counts it as one), and anything else is refused with
the valid names, including a ``format_version`` newer than this code understands.

This file is copied into every saved GRACE folder with the module; without this library installed, a refusal is a
plain ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from .role_modes import RoleModes


try:
    from grace_st.errors import GraceUserError
except ImportError:  # a folder's own copy, loaded without the library
    GraceUserError = ValueError  # type: ignore[misc,assignment]

FORMAT_VERSION = 3
"""Version of ``grace_config.json``; bumped when a key is added or changes meaning. 2 added ``min_library_version``,
3 ``role_modes`` (per-role span and rationale budget, see ``role_modes.py``). A folder is written with the lowest
version that holds its settings: one without per-role modes is still format 2, so an older grace-st keeps loading it,
and one with them is format 3, which an older grace-st refuses (it would otherwise drop the modes and encode every
role the same way)."""

BASE_FORMAT_VERSION = 2
"""The version of a folder that uses no key added after it (see :data:`FORMAT_VERSION`)."""

MIN_LIBRARY_VERSION = "0.2.0.dev0"
"""Oldest grace-st that reads this format, and whose single pass a folder's own module may call."""

SAVED_SETTINGS: dict[str, tuple[type, ...]] = {
    "instruction": (str,),
    "span": (str,),
    "layer": (int,),
    "max_new_tokens": (int,),
    "max_input_tokens": (int, type(None)),
    "do_sample": (bool,),
    "temperature": (int, float),
    "top_p": (int, float),
    "seed": (int, type(None)),
    "role_modes": (dict, type(None)),
    "format_version": (int,),
    "min_library_version": (str,),
}
"""Every key ``grace_config.json`` may hold, with the JSON types it may have."""


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _has_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false: a bool, never an int or a float
        return bool in types
    return isinstance(value, types)


def read_saved_settings(config: dict[str, Any], source: str) -> dict[str, Any]:
    """The constructor arguments ``config`` (a parsed ``grace_config.json`` from ``source``) is allowed to set.

    Raises ``GraceUserError`` naming the offending key and the fix for: a key that is not a saved setting, a value
    of the wrong type, and a format newer than :data:`FORMAT_VERSION`.
    """
    if not isinstance(config, dict):
        raise GraceUserError(f"{source} must hold a JSON object of GRACE settings, got {type(config).__name__}.")
    unknown = sorted(set(config) - set(SAVED_SETTINGS))
    if unknown:
        raise GraceUserError(
            f"{source} has keys {unknown} that are not saved GRACE settings; the valid keys are "
            f"{sorted(SAVED_SETTINGS)}. Remove them (run-time options such as token_budget are passed in code, "
            "not read from a model folder), or upgrade grace-st if the folder was written by a newer version."
        )
    for key, value in config.items():
        if not _has_type(value, SAVED_SETTINGS[key]):
            raise GraceUserError(
                f"{source}: {key}={value!r} is a {type(value).__name__}, but {key} must be "
                f"{_type_names(SAVED_SETTINGS[key])}. Fix the value in the file, or re-save the model."
            )
    version = config.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise GraceUserError(
            f"{source} has format_version {version}, newer than the {FORMAT_VERSION} this code reads: the model was "
            "saved by a newer grace-st. Upgrade grace-st to load it."
        )
    _check_library_version(config.get("min_library_version"), source)
    if config.get("role_modes") is not None:
        RoleModes.from_config(config["role_modes"], f"{source}: role_modes")
    return {key: value for key, value in config.items() if key not in ("format_version", "min_library_version")}


def _check_library_version(needed: str | None, source: str) -> None:
    """Refuse, naming the upgrade, when the installed grace-st is older than the folder needs.

    A folder's own copy of this file, run where grace-st is not installed, has no library to compare.
    """
    if needed is None:
        return
    try:
        from grace_st import __version__ as installed
    except ImportError:
        return
    from packaging.version import InvalidVersion, Version

    try:
        too_old = Version(installed) < Version(needed)
    except InvalidVersion as exc:
        raise GraceUserError(f"{source}: min_library_version={needed!r} is not a version number.") from exc
    if too_old:
        raise GraceUserError(
            f"{source} needs grace-st {needed} or newer, but {installed} is installed. Upgrade: "
            f'pip install -U "grace-st>={needed}".'
        )
