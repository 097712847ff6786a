"""``grace_st.atomic``: saves appear whole or not at all, and leave nothing behind however the writer ends.

Kills are injected at a chosen point (the child process signals itself inside the write), not timed.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from grace_st.atomic import atomic_directory, atomic_file, remove_stale
from grace_st.errors import GraceUserError


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_a_failed_folder_save_moves_back_what_it_took(tmp_path):
    keep = tmp_path / "checkpoints"
    keep.mkdir()
    (keep / "state.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "model") as staging:
        staging.move_in(keep, "checkpoints")
        raise KeyboardInterrupt  # Ctrl-C during the save
    assert (keep / "state.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_sigterm_during_a_write_removes_the_temporary(tmp_path, kind):
    """The child sends itself SIGTERM half-way through the write; it must die of SIGTERM and leave nothing."""
    body = {
        "file": "with atomic_file(target) as handle:\n    handle.write('half')\n    stop()",
        "folder": "with atomic_directory(target) as staging:\n    (staging.path / 'w.bin').write_bytes(b'0' * 1000)\n"
        "    stop()",
    }[kind]
    script = (
        textwrap.dedent(
            """
        import os, signal, sys, time
        from grace_st.atomic import atomic_directory, atomic_file
        target = sys.argv[1]
        def stop():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        """
        )
        + body
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], timeout=60)
    assert done.returncode == -signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "vectors.jsonl"
    dead = tmp_path / f".vectors.jsonl.{_dead_pid()}-0a1b2c3d.partial"
    live = tmp_path / f".vectors.jsonl.{os.getppid()}-0a1b2c3d.partial"  # a writer that is still running
    dead_folder = tmp_path / f".vectors.jsonl.{_dead_pid()}-deadbeef.partial"
    for leftover in (dead, live):
        leftover.write_text("half")
    dead_folder.mkdir()
    (dead_folder / "model.safetensors").write_bytes(b"0" * 100)
    with atomic_file(target) as handle:  # the next run writing the same output cleans up first
        handle.write("done\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name])


def test_a_kill_between_the_two_renames_is_repaired(tmp_path):
    """Killed after moving the old folder aside and before renaming the new one in: the old one comes back."""
    target = tmp_path / "model"
    aside = tmp_path / f".model.{_dead_pid()}-0a1b2c3d.old"
    aside.mkdir()
    (aside / "modules.json").write_text("[]")
    assert remove_stale(target) == [aside]
    assert (target / "modules.json").read_text() == "[]"


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_results_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        with atomic_file(tmp_path / "out.jsonl") as handle:
            handle.write("x")
        with atomic_directory(tmp_path / "model") as staging:
            (staging.path / "config.json").write_text("{}")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "out.jsonl") == file_mode
    assert _mode(tmp_path / "model") == dir_mode


def test_private_results_stay_private(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "secret", private=True) as handle:
            handle.write("x")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "secret") == 0o600


def test_a_folder_where_a_file_goes_is_refused_by_name(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(GraceUserError, match=r"out' is a folder, but a file"), atomic_file(tmp_path / "out"):
        pass
    with pytest.raises(GraceUserError, match=r"x' is a file, but a folder"):
        (tmp_path / "x").write_text("")
        with atomic_directory(tmp_path / "x"):
            pass
