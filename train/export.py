"""From a trained policy to a saved GRACE sentence-transformers folder (LoRA merged, card written, saved atomically).

The output folder of ``grace train`` is itself the GRACE model, so it loads with
``SentenceTransformer(output_dir, trust_remote_code=True)``. TRL's checkpoints live in its ``checkpoints/``
subfolder; the final save writes the whole model into a temporary sibling folder, moves ``checkpoints/`` into it and
swaps it into place (:func:`~grace_st.atomic.atomic_directory`), so a process killed while saving never leaves a
half-written model behind, and a failed save moves ``checkpoints/`` back.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from ..atomic import atomic_directory
from ..build import build_grace_model, write_grace_folder
from .config import GraceConfig
from .output_dir import CHECKPOINTS


def merged_policy(model: Any) -> Any:
    """The plain causal LM with any LoRA adapter merged into its weights (full fine-tunes pass through)."""
    merge = getattr(model, "merge_and_unload", None)
    return merge() if callable(merge) else model


def grace_model_from_policy(
    policy: Any, tokenizer: Any, args: GraceConfig, workdir: str | os.PathLike
) -> SentenceTransformer:
    """An in-memory GRACE model on ``policy``'s weights with the training run's prompts and pooling settings.

    The saved encoder generates with the settings it was trained with (the paper: "the same generation and pooling
    configurations as training"), per role when ``role_modes`` is set, except that decoding is greedy so vectors are
    deterministic.
    """
    backbone = Path(workdir) / "backbone"
    merged_policy(policy).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    return build_grace_model(
        str(backbone),
        prompts={"query": args.prompt_for("query"), "document": args.prompt_for("document")},
        instruction=args.instruction,
        span=args.pooled_span,
        layer=args.pooled_layer,
        max_new_tokens=args.max_completion_length,
        max_input_tokens=args.max_input_tokens,
        role_modes=args.grace_role_modes(),  # the per-role modes the rollouts were embedded with
    )


def save_trained_model(
    model: SentenceTransformer,
    output_dir: str | os.PathLike,
    summary: dict[str, Any],
    extra_files: Iterable[str | os.PathLike] = (),
) -> Path:
    """Save ``model`` (its card data already filled), ``train_summary.json`` and ``extra_files`` (copied in by name,
    e.g. the card's ``learning_curve.png``) atomically into ``output_dir``."""
    target = Path(output_dir).expanduser().resolve()
    checkpoints = target / CHECKPOINTS
    with atomic_directory(target) as staging:
        write_grace_folder(model, staging.path)
        (staging.path / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        for extra in extra_files:
            shutil.copyfile(extra, staging.path / Path(extra).name)
        if checkpoints.exists():  # same filesystem: an atomic move, undone if the save fails
            staging.move_in(checkpoints, CHECKPOINTS)
    return target
