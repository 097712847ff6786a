"""``grace train``'s output folder: nothing in it is destroyed unasked, one run at a time, and a kill -9 while a
checkpoint is written resumes from the newest complete one.

The kill is injected at a chosen point of the checkpoint save (the trainer state, which Transformers writes last,
raises instead of being written), not timed.
"""

from __future__ import annotations

import logging

import pytest
from filelock import FileLock
from test_train_run import _argv
from transformers.trainer_callback import TrainerState

from grace_st.cli import main as grace_main
from grace_st.train import run as run_module


def _no_backbone(*args, **kwargs):
    raise AssertionError("the output folder must be checked before the backbone is loaded")


def test_a_folder_holding_other_files_is_refused_and_kept(tiny_backbone, data_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(run_module, "load_backbone", _no_backbone)
    assert grace_main(["train", *_argv(tiny_backbone, data_file, out)]) == 2
    err = capsys.readouterr().err
    assert f"output_dir '{out}' is not empty (it holds notes.txt)" in err and "--overwrite_output_dir" in err
    assert (out / "notes.txt").read_text() == "mine"


def test_an_earlier_runs_checkpoints_are_not_mixed_in(tiny_backbone, data_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (out / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    monkeypatch.setattr(run_module, "load_backbone", _no_backbone)
    assert grace_main(["train", *_argv(tiny_backbone, data_file, out)]) == 2
    err = capsys.readouterr().err
    assert "checkpoints of an earlier run" in err and "--resume_from_checkpoint last" in err
    assert (out / "checkpoints" / "checkpoint-3").is_dir()


def test_a_second_run_into_the_same_folder_is_refused(tiny_backbone, data_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(run_module, "load_backbone", _no_backbone)
    with FileLock(str(tmp_path / ".out.lock")):  # as a first run holds it for its whole duration
        assert grace_main(["train", *_argv(tiny_backbone, data_file, out)]) == 2
    assert f"Another run is writing output_dir '{out}'" in capsys.readouterr().err


def test_overwrite_output_dir_replaces_the_folder(tiny_backbone, data_file, tmp_path):
    out = tmp_path / "out"
    (out / "checkpoints" / "checkpoint-9").mkdir(parents=True)
    (out / "notes.txt").write_text("old")
    run_module.run_training(
        *run_module.parse_args(_argv(tiny_backbone, data_file, out, max_steps=1, overwrite_output_dir=True))
    )
    assert (out / "modules.json").is_file() and not (out / "notes.txt").exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir()) == ["checkpoint-1"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")) == [".out.lock"]


class _Killed(BaseException):
    """Stands for kill -9: nothing in the trainer catches it, so the checkpoint stays as the kill left it."""


def test_killed_while_saving_a_checkpoint_resumes_from_the_newest_complete(
    tiny_backbone, data_file, tmp_path, capsys, monkeypatch, caplog
):
    out = tmp_path / "out"
    original = TrainerState.save_to_json

    def killed_at_step_2(self, path):
        if self.global_step == 2:
            raise _Killed
        original(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", killed_at_step_2)
    with pytest.raises(_Killed):
        argv = _argv(tiny_backbone, data_file, out, max_steps=3, save_steps=1)
        run_module.run_training(*run_module.parse_args(argv))
    assert (out / "checkpoints" / "checkpoint-2" / "model.safetensors").is_file(), "a half-written checkpoint"
    monkeypatch.setattr(TrainerState, "save_to_json", original)
    capsys.readouterr()

    argv = _argv(tiny_backbone, data_file, out, max_steps=3, save_steps=1, resume_from_checkpoint="last")
    with caplog.at_level(logging.INFO, logger="grace_st"):
        summary = run_module.run_training(*run_module.parse_args(argv))
    err = caplog.text
    assert f"resuming from {out / 'checkpoints' / 'checkpoint-1'}" in err
    assert "checkpoint-2: the run that was writing it died" in err
    assert summary["steps"] == 3 and (out / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
