"""The ``grace`` console script."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grace_st.cli import main


def test_help_is_complete(capsys):
    for argv in (["--help"], ["encode", "--help"], ["build", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--text", "--file", "--output", "--prompt-name", "--backbone", "--overwrite", "--max-new-tokens"):
        assert flag in out, flag


def test_console_script_is_installed():
    """The ``grace`` entry point pyproject declares is on the environment's path (not ``python -m``)."""
    script = Path(sys.executable).parent / "grace"
    assert script.exists(), f"no console script at {script}: is the package installed (pip install -e .)?"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "encode" in result.stdout and "build" in result.stdout


def test_version_is_the_installed_distribution(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"grace {version('grace-st')}"


def test_build_then_encode_texts_and_file(tiny_backbone, tmp_path, capsys):
    folder = tmp_path / "model"
    assert main(["build", str(folder), "--backbone", str(tiny_backbone), "--max-new-tokens", "6"]) == 0
    assert json.loads((folder / "grace_config.json").read_text())["max_new_tokens"] == 6

    out = tmp_path / "x.jsonl"
    assert main(["encode", str(folder), "--text", "A cat sat.", "Markets fell.", "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in records] == ["A cat sat.", "Markets fell."]
    assert all(set(r) == {"text", "rationale", "embedding"} for r in records)
    assert abs(np.linalg.norm(records[0]["embedding"]) - 1) < 1e-5

    again = tmp_path / "y.jsonl"
    source = tmp_path / "texts.txt"
    source.write_text("A cat sat.\n\nMarkets fell.\n")
    assert main(["encode", str(folder), "--file", str(source), "--output", str(again)]) == 0
    assert again.read_text() == out.read_text(), "same texts, same model: identical output"
    assert "skipped 1 blank lines" in capsys.readouterr().err


def test_encode_wraps_a_plain_causal_lm_folder(tiny_backbone, capsys):
    assert main(["encode", str(tiny_backbone), "--text", "A cat sat.", "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert "not a GRACE model folder" in captured.err
    assert json.loads(captured.out.strip())["text"] == "A cat sat."


def test_encode_int8_writes_vectors_near_the_fp32_ones(tiny_backbone, capsys):
    argv = ["encode", str(tiny_backbone), "--text", "A cat sat.", "--max-new-tokens", "4"]
    assert main(argv) == 0
    fp32 = json.loads(capsys.readouterr().out.strip())["embedding"]
    assert main([*argv, "--int8"]) == 0
    int8 = json.loads(capsys.readouterr().out.strip())["embedding"]
    assert int8 != fp32 and sum(a * b for a, b in zip(int8, fp32, strict=True)) > 0.9


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "--file", "/no/such/file.txt"], "No such file: '/no/such/file.txt'"),
        (["encode", "nobody/no-such-model", "--text", "x"], "Cannot load 'nobody/no-such-model'"),
        (["encode", "./missing-folder", "--text", "x"], "No such folder"),
    ],
)
def test_user_mistakes_end_in_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"grace: error: {message}" in err and "Traceback" not in err


def test_empty_text_on_the_command_line(tiny_backbone, capsys):
    assert main(["encode", str(tiny_backbone), "--text", "ok", "  "]) == 2
    assert "empty or whitespace-only text" in capsys.readouterr().err


def test_build_refuses_existing_folder(tiny_backbone, tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    assert main(["build", str(tmp_path / "m"), "--backbone", str(tiny_backbone)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"), [("{oops", "x.jsonl:2 is not valid JSON"), ('{"body": "x"}', "no 'text'")]
)
def test_bad_jsonl_lines_are_named(tmp_path, capsys, line, message):
    source = tmp_path / "x.jsonl"
    source.write_text('{"text": "fine"}\n' + line + "\n")
    assert main(["encode", "--file", str(source)]) == 2
    assert message in capsys.readouterr().err


def test_show_rationales_never_sends_control_characters_to_the_terminal(tiny_backbone, capsys):
    """A text holding escape sequences (retitle the window, clear the screen) is shown escaped, stored verbatim."""
    hostile = "Nice text\x1b]0;owned\x07 and \x1b[2J more\x9b"
    argv = ["encode", str(tiny_backbone), "--text", hostile, "--max-new-tokens", "4", "--show-rationales"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert not any(ch in captured.err for ch in "\x1b\x07\x9b"), "raw control characters reached the terminal"
    assert "Nice text\\x1b]0;owned\\x07 and \\x1b[2J more\\x9b" in captured.err
    assert "\x1b" not in captured.out and json.loads(captured.out.strip())["text"] == hostile


def _never(*args, **kwargs):
    raise AssertionError("the mistake must be reported before the model is loaded")


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda d: (d / "out").mkdir(), ["encode", "--text", "x", "--output", "{d}/out"], "out' is a folder, but"),
        (lambda d: (d / "f").write_text(""), ["encode", "--text", "x", "--output", "{d}/f/x.jsonl"], "Cannot create"),
        (lambda d: (d / "f").write_text(""), ["build", "{d}/f"], "f' is a file, but a folder"),
    ],
)
def test_output_mistakes_are_named_before_the_model_loads(tmp_path, capsys, monkeypatch, make, argv, message):
    import grace_st.build
    import grace_st.loading

    monkeypatch.setattr(grace_st.loading, "load_grace_model", _never)
    monkeypatch.setattr(grace_st.build, "resolve_backbone", _never)
    make(tmp_path)
    assert main([arg.format(d=tmp_path) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and ".partial" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.txt", b"fine\n\xff\xfe latin-1?\n", "x.txt:2 is not valid UTF-8 (byte 0xff at column 1)"),
        ("x.jsonl", b'{"text": null}\n{"text": "fine"}\n', "x.jsonl:1 has 'text': null, not a string"),
    ],
)
def test_unreadable_input_lines_are_named(tiny_backbone, tmp_path, capsys, name, content, message):
    source = tmp_path / name
    source.write_bytes(content)
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--chunk-size", "1", "--max-new-tokens", "2"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_an_invalid_grace_config_is_named(grace_tiny, tmp_path, capsys):
    from grace_st import save_grace_model

    folder = save_grace_model(grace_tiny, tmp_path / "m")
    (folder / "grace_config.json").write_text('{"max_new_tokens": 8,')
    assert main(["encode", str(folder), "--text", "x"]) == 2
    assert f"'{folder / 'grace_config.json'}' is not valid JSON" in capsys.readouterr().err


def test_saved_models_and_outputs_follow_the_umask(tiny_backbone, tmp_path):
    previous = os.umask(0o022)
    try:
        folder = tmp_path / "model"
        assert main(["build", str(folder), "--backbone", str(tiny_backbone), "--max-new-tokens", "2"]) == 0
        out = tmp_path / "x.jsonl"
        assert main(["encode", str(folder), "--text", "A cat sat.", "--output", str(out)]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (folder, folder / "modules.json", out)}
    assert modes == {"model": 0o755, "modules.json": 0o644, "x.jsonl": 0o644}


def test_a_killed_builds_leftover_is_removed_by_the_next_build(tiny_backbone, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".model.{dead.pid}-0a1b2c3d.partial"  # what kill -9 during `grace build` leaves
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"0" * 4096)
    assert main(["build", str(tmp_path / "model"), "--backbone", str(tiny_backbone), "--max-new-tokens", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_an_internal_error_is_reported_as_a_bug_with_its_traceback(monkeypatch, capsys):
    """A ValueError from inside the library is not a user's mistake: full traceback, the bug line, exit 1."""
    import grace_st.cli

    def broken(args):
        raise ValueError("row groups cover 3 rows; the batch has 4")  # an invariant of ours, broken

    monkeypatch.setattr(grace_st.cli, "run_encode", broken)
    assert main(["encode", "--text", "a cat"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: row groups cover 3 rows" in err
    assert "this is a bug in grace-st" in err and "grace: error:" not in err


def test_a_user_mistake_is_one_line_and_exit_2(capsys):
    assert main(["encode", "--text", "a cat", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grace: error:") and "--batch-size must be a positive integer" in err
    assert "Traceback" not in err


def test_training_bugs_and_mistakes_are_told_apart(monkeypatch, capsys, tmp_path):
    from grace_st.train import cli as train_cli
    from grace_st.train import run as run_module

    # TRL's own check of the settings (rows per step not a multiple of the rollouts) is the user's to fix
    argv = ["--output_dir", str(tmp_path / "o"), "--dataset_name", "grace:wordnet"]
    argv += ["--per_device_train_batch_size", "3", "--num_generations", "2"]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("grace: error: Invalid training settings") and "Traceback" not in err

    def broken(argv=None):
        raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")

    monkeypatch.setattr(run_module, "main", broken)
    assert train_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "this is a bug in grace-st" in err
