"""The training output folder: whether this run may write it, one run at a time, and which checkpoint to resume.

``grace train`` replaces its ``output_dir`` with the trained model at the end, so a folder holding anything else
(another model, a user's files, the checkpoints of an earlier run) would be lost without a word. A non-empty folder
is therefore refused unless it is this run's: its ``checkpoints/`` are being resumed, or ``--overwrite_output_dir``
says to replace it (the Transformers flag users know). A lock file beside the folder keeps a second run out while
one is writing it; the operating system releases it when the holder dies, even by kill -9.

Transformers names a checkpoint folder before it has written into it, so a kill -9 during a save leaves an
incomplete ``checkpoint-N/`` that ``get_last_checkpoint`` would pick. A checkpoint counts as complete only when its
``trainer_state.json`` (written last by ``Trainer._save_checkpoint``) parses and names its step; resuming takes the
newest complete one, says which, and removes the incomplete ones of the dead run.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import GraceUserError


logger = logging.getLogger(__name__)


CHECKPOINTS = "checkpoints"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_RESUME_LAST = ("last", "true")


def resume_requested(value: str | None) -> bool:
    return value is not None and str(value).lower() not in ("false", "none", "")


def check_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse, before the backbone loads, an ``output_dir`` that holds something this run would destroy."""
    if output_dir.exists() and not output_dir.is_dir():
        raise GraceUserError(f"output_dir '{output_dir}' is a file. Choose a folder path for output_dir.")
    if overwrite or not output_dir.is_dir():
        return
    held = sorted(entry.name for entry in output_dir.iterdir() if entry.name != CHECKPOINTS)
    has_checkpoints = (output_dir / CHECKPOINTS).is_dir()
    if resume_requested(resume) and has_checkpoints:
        return
    if not held and not has_checkpoints:
        return
    shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
    what = f"holds {shown}" if held else "holds the checkpoints of an earlier run"
    hint = " --resume_from_checkpoint last to continue that run, or" if has_checkpoints else ""
    raise GraceUserError(
        f"output_dir '{output_dir}' is not empty (it {what}); training would replace it. Pass{hint} "
        "--overwrite_output_dir to replace it, or choose another output_dir."
    )


@contextmanager
def output_dir_lock(output_dir: Path) -> Iterator[None]:
    """Hold ``.<output_dir>.lock`` (beside the folder, which is itself replaced at the end) for the whole run."""
    from filelock import FileLock, Timeout

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output_dir.with_name(f".{output_dir.name}.lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise GraceUserError(
            f"Another run is writing output_dir '{output_dir}' (it holds {lock.lock_file}). Wait for it to end, "
            "or choose another output_dir."
        ) from exc
    try:
        yield
    finally:
        lock.release()


def clear_checkpoints(output_dir: Path) -> None:
    """``--overwrite_output_dir`` without resuming: an earlier run's checkpoints must not mix with this run's."""
    checkpoints = output_dir / CHECKPOINTS
    if checkpoints.is_dir():
        logger.info(f"--overwrite_output_dir: removing the earlier run's {checkpoints}")
        shutil.rmtree(checkpoints)


def is_complete(checkpoint: Path) -> bool:
    """Whether Transformers finished writing ``checkpoint``: its trainer state, written last, is whole."""
    found = _CHECKPOINT.match(checkpoint.name)
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return found is not None and isinstance(state, dict) and state.get("global_step") == int(found.group(1))


def _checkpoints_newest_first(checkpoint_dir: Path) -> list[Path]:
    found = [p for p in checkpoint_dir.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)), reverse=True)


def resolve_resume(value: str | None, checkpoint_dir: Path, *, prune: bool = False) -> str | None:
    """``last``/``true`` → newest *complete* checkpoint in ``checkpoint_dir`` (None if none yet), a path → itself.

    With ``prune`` (the main process, holding the lock), incomplete checkpoints newer than the chosen one are
    removed, so the resumed run does not save into a dead run's half-written folder.
    """
    if not resume_requested(value):
        return None
    if str(value).lower() not in _RESUME_LAST:
        if not Path(value).is_dir():
            raise GraceUserError(f"resume_from_checkpoint='{value}' is not a folder. Use 'last' or a checkpoint path.")
        if not is_complete(Path(value)):
            raise GraceUserError(
                f"resume_from_checkpoint='{value}' is incomplete (its trainer_state.json is missing or cut short: "
                "the run was killed while saving it). Use 'last' to take the newest complete checkpoint."
            )
        return str(value)
    if not checkpoint_dir.is_dir():
        return None
    incomplete: list[Path] = []
    chosen = None
    for checkpoint in _checkpoints_newest_first(checkpoint_dir):
        if is_complete(checkpoint):
            chosen = checkpoint
            break
        incomplete.append(checkpoint)
    if prune:
        for checkpoint in incomplete:
            logger.warning(f"removing {checkpoint}: the run that was writing it died before finishing")
            shutil.rmtree(checkpoint, ignore_errors=True)
        logger.info(f"resuming from {chosen}" if chosen else "no complete checkpoint yet")
    return str(chosen) if chosen else None
