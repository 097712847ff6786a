"""Turn any Hugging Face causal LM into a GRACE sentence-transformers model, and save one atomically.

A saved GRACE folder is a standard sentence-transformers folder (``modules.json``, the backbone's weights and
tokenizer in the root, ``grace_config.json``, ``1_Pooling/``, ``2_Normalize/``) plus the Python files of the
``RationaleGenerator`` module, which ``modules.json`` references as ``rationale_generator.RationaleGenerator``. So the
folder loads with ``SentenceTransformer(folder, trust_remote_code=True)`` with or without this library installed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

from . import modeling
from .atomic import atomic_directory, check_writable
from .backbones import EMBEDDED_BACKBONE_ID, resolve_backbone
from .errors import GraceFileExistsError
from .model_card import GraceModelCardData
from .model_ids import is_grace_module_type
from .published_files import MODULE_CODE_FILES
from .rationale_generator import RationaleGenerator


REMOTE_MODULE_REF = "rationale_generator.RationaleGenerator"
_REMOTE_FILES = tuple(name for name in MODULE_CODE_FILES if name != "rationale_generator.py")


def build_grace_model(
    backbone: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    *,
    prompts: dict[str, str] | None = None,
    device: str | None = None,
    overwrite: bool = False,
    model_kwargs: dict[str, Any] | None = None,
    **settings: Any,
) -> SentenceTransformer:
    """Build an (untrained) GRACE model from a causal LM and optionally save it.

    Args:
        backbone: Hub id or local folder of a causal LM; ``None`` for the embedded SmolLM2-135M-Instruct.
        output_dir: if given, the model is saved there atomically (see :func:`save_grace_model`).
        prompts: sentence-transformers prompts; by default ``query`` and ``document`` both use the instruction.
        device: torch device; sentence-transformers picks one when ``None``.
        overwrite: replace an existing ``output_dir``.
        model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``{"dtype": "bfloat16"}`` on GPU).
        **settings: :class:`RationaleGenerator` settings (``instruction``, ``span``, ``layer``, ``max_new_tokens``,
            ``max_input_tokens``, ``do_sample``, ``temperature``, ``top_p``, ``seed``).

    Returns:
        The in-memory model (the same vectors as the saved folder gives when reloaded).
    """
    if output_dir is not None:  # a bad target fails now, not after loading the backbone
        check_output_dir(output_dir, overwrite)
    location = resolve_backbone(backbone)
    generator = RationaleGenerator(location, model_kwargs=model_kwargs, **settings)
    instruction = generator.instruction
    base_model = EMBEDDED_BACKBONE_ID if backbone is None else (None if Path(location).exists() else location)
    card = GraceModelCardData(
        license="apache-2.0" if backbone is None else None,  # SmolLM2-135M-Instruct's license
        local_files_only=True,  # no Hub look-ups while writing the card
        generate_widget_examples=False,  # widget examples would run generation at save time
        grace_settings={k: v for k, v in generator.get_config_dict().items() if k != "instruction"},
    )
    card.base_model = base_model  # not an init field: sentence-transformers normally sets it from a Hub look-up
    model = SentenceTransformer(
        modules=[generator, Pooling(generator.get_embedding_dimension(), pooling_mode="mean"), Normalize()],
        device=device,
        prompts=prompts or {"query": instruction, "document": instruction},
        similarity_fn_name="cosine",
        model_card_data=card,
    )
    if output_dir is not None:
        save_grace_model(model, output_dir, overwrite=overwrite)
    return model


def export_remote_code(folder: str | os.PathLike) -> None:
    """Copy the module's source files into ``folder`` and point ``modules.json`` at the copy."""
    folder = Path(folder)
    here = Path(__file__).parent
    shutil.copyfile(here / "rationale_generator.py", folder / "rationale_generator.py")
    for name in _REMOTE_FILES:
        shutil.copyfile(Path(modeling.__file__).parent / name, folder / name)
    modules_path = folder / "modules.json"
    entries = json.loads(modules_path.read_text(encoding="utf8"))
    for entry in entries:
        if is_grace_module_type(entry["type"]):
            entry["type"] = REMOTE_MODULE_REF
    modules_path.write_text(json.dumps(entries, indent=2), encoding="utf8")


def save_grace_model(model: SentenceTransformer, output_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save ``model`` into ``output_dir`` so that no reader ever sees a half-written folder.

    The model is written into a temporary sibling folder and renamed into place (:mod:`grace_st.atomic`); an
    existing folder is replaced only with ``overwrite=True``, and only once the new one is complete.
    """
    target = check_output_dir(output_dir, overwrite)
    with atomic_directory(target) as staging:
        write_grace_folder(model, staging.path)
    return target


def write_grace_folder(model: SentenceTransformer, folder: Path) -> None:
    """Write ``model`` into the (new, empty) ``folder``: the sentence-transformers files plus the remote code."""
    model.save_pretrained(str(folder))
    export_remote_code(folder)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> Path:
    """The resolved ``output_dir``, or a :class:`GraceUserError` before any slow work if it cannot be written."""
    target = check_writable(output_dir, directory=True)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise GraceFileExistsError(
            f"'{target}' already exists and is not empty. Pass overwrite=True (--overwrite) or choose another folder."
        )
    return target
