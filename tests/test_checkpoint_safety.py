"""Resuming never unpickles code: a checkpoint whose state names Python objects is refused before training starts."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from grace_st.cli import main as grace_main
from grace_st.errors import GraceUserError
from grace_st.train.checkpoint_safety import check_resumable


class _RunsCode:
    """Unpickling this calls ``exec``: what a hostile optimizer.pt would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _trainer_like_checkpoint(folder):
    """The pickles the Trainer writes and reads back: RNG state (with numpy), optimizer and scheduler states."""
    folder.mkdir(parents=True)
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(rng, folder / "rng_state.pth")
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param])
    param.grad = torch.ones(2)
    optimizer.step()
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0).state_dict(), folder / "scheduler.pt")
    (folder / "trainer_state.json").write_text("{}")
    return folder


def test_checkpoints_as_the_trainer_writes_them_pass(tmp_path):
    check_resumable(_trainer_like_checkpoint(tmp_path / "checkpoint-2"))


def test_a_pickle_that_runs_code_is_refused_naming_it(tmp_path):
    checkpoint = _trainer_like_checkpoint(tmp_path / "checkpoint-2")
    marker = tmp_path / "MARKER"
    torch.save({"state": _RunsCode(marker)}, checkpoint / "optimizer.pt")
    with pytest.raises(GraceUserError, match=r"optimizer.pt names Python objects \['builtins.exec'\]"):
        check_resumable(checkpoint)
    assert not marker.exists()


def test_grace_train_refuses_such_a_checkpoint_before_loading_anything(tmp_path, data_file, tiny_backbone, capsys):
    checkpoint = _trainer_like_checkpoint(tmp_path / "foreign" / "checkpoint-2")
    (checkpoint / "trainer_state.json").write_text('{"global_step": 2}')  # complete, as far as its state says
    marker = tmp_path / "MARKER"
    torch.save(_RunsCode(marker), checkpoint / "rng_state.pth")
    argv = [f"--model_name_or_path={tiny_backbone}", f"--dataset_name={data_file}", f"--output_dir={tmp_path / 'o'}"]
    argv += [f"--resume_from_checkpoint={checkpoint}", "--report_to=none", "--max_steps=1"]
    assert grace_main(["train", *argv]) == 2
    assert "Refusing to resume" in capsys.readouterr().err
    assert not marker.exists()
