"""Check a checkpoint before resuming from it: its pickled state must be loadable without running code.

Resuming loads a checkpoint's model weights (safetensors), ``trainer_state.json`` and three pickles written by
``torch.save``: ``optimizer.pt``, ``scheduler.pt`` and ``rng_state*.pth`` (the random streams the rollouts sample
from). transformers 5's Trainer loads each pickle with ``torch.load(weights_only=True)`` (numpy's array types
allowlisted for the RNG state; PEFT adapters likewise), which refuses to call anything a file names. This check makes
that a property of ``grace train`` rather than of whichever transformers is installed: before the trainer starts,
every pickle in the checkpoint is disassembled (no tensor is loaded, so it is cheap) and one that names a Python
object outside weights-only loading's allowlist is refused with its name.

``training_args.bin`` is a full pickle of the training arguments that transformers writes and never reads back on
resume; it is not loaded, so it is not checked. Everything else a resumed checkpoint holds is data read as JSON.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import GraceUserError


PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
NOT_LOADED_ON_RESUME = ("training_args.bin",)


def unsafe_globals(path: Path) -> list[str]:
    """Python objects the ``torch.save`` file ``path`` names that a weights-only load refuses (empty: safe)."""
    import torch
    from transformers.trainer_pt_utils import safe_globals

    with safe_globals():  # the numpy types the Trainer allowlists for rng_state.pth
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def check_resumable(checkpoint: str | Path) -> None:
    """Raise ``GraceUserError`` if a pickle in ``checkpoint`` could run code when the trainer loads it."""
    folder = Path(checkpoint)
    for path in sorted(folder.rglob("*")):
        if path.suffix not in PICKLE_SUFFIXES or path.name in NOT_LOADED_ON_RESUME or not path.is_file():
            continue
        try:
            unsafe = unsafe_globals(path)
        except (ValueError, RuntimeError) as exc:  # not a torch.save zip file: cannot be checked, so not loaded
            unsafe = [f"<unreadable: {exc}>"]
        if unsafe:
            raise GraceUserError(
                f"Refusing to resume from '{folder}': {path.name} names Python objects {unsafe} that weights-only "
                "loading refuses, so loading it could run code. Resume only from checkpoints written by `grace "
                "train`; delete this checkpoint (or pass another one to --resume_from_checkpoint)."
            )
