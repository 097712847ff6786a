"""``grace encode --file`` streams: texts are read lazily, each chunk is written out before the next is encoded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import TEXTS

import grace_st.streaming as streaming
from grace_st import encode_with_rationales
from grace_st.cli import main
from grace_st.streaming import encode_stream, iter_texts


def test_each_chunk_is_on_disk_before_the_next_is_encoded(tiny_backbone, tmp_path, monkeypatch):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out_dir = tmp_path / "out"
    output = out_dir / "vectors.jsonl"
    seen_on_disk = []
    original = streaming.encode_with_rationales

    def spy(model, chunk, **kwargs):
        seen_on_disk.append(len((out_dir / "vectors.jsonl.partial").read_text().splitlines()))
        assert not output.exists(), "the output appears only once complete"
        return original(model, chunk, **kwargs)

    monkeypatch.setattr(streaming, "encode_with_rationales", spy)
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--max-new-tokens", "4"]
    assert main([*argv, "--chunk-size", "2", "--batch-size", "2"]) == 0
    assert seen_on_disk == [0, 2, 4], "chunks of 2: each chunk's lines are flushed before the next chunk starts"
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["text"] for r in records] == TEXTS
    assert sorted(p.name for p in out_dir.iterdir()) == ["vectors.jsonl"], "no partial file or record is left"


def _encoded_texts(monkeypatch) -> list[str]:
    """Record every text ``grace encode`` hands to the model from now on."""
    seen: list[str] = []
    original = streaming.encode_with_rationales

    def spy(model, chunk, **kwargs):
        seen.extend(chunk)
        return original(model, chunk, **kwargs)

    monkeypatch.setattr(streaming, "encode_with_rationales", spy)
    return seen


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_output(resumed, uninterrupted):
    a, b = _records(resumed), _records(uninterrupted)
    assert [(r["text"], r["rationale"]) for r in a] == [(r["text"], r["rationale"]) for r in b]
    np.testing.assert_allclose([r["embedding"] for r in a], [r["embedding"] for r in b], rtol=0, atol=1e-6)


def test_chunking_changes_no_vector(grace_tiny):
    whole = encode_with_rationales(grace_tiny, TEXTS, batch_size=4)
    chunked = [item for chunk in encode_stream(grace_tiny, iter(TEXTS), chunk_size=2, batch_size=4) for item in chunk]
    assert [item.text for item in chunked] == TEXTS
    np.testing.assert_allclose(
        np.stack([i.embedding for i in chunked]), np.stack([i.embedding for i in whole]), atol=1e-6
    )
    assert [item.rationale for item in chunked] == [item.rationale for item in whole]


def test_a_bad_text_in_a_later_chunk_keeps_the_finished_chunk_and_a_fixed_rerun_continues(
    tiny_backbone, tmp_path, capsys, monkeypatch
):
    source = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": t}) for t in TEXTS[:3]] + [json.dumps({"text": "   "})]
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out" / "vectors.jsonl"
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--chunk-size", "2"]
    assert main([*argv, "--max-new-tokens", "2"]) == 2
    assert "empty or whitespace-only text" in capsys.readouterr().err
    assert not output.exists()
    assert [r["text"] for r in _records(output.with_name("vectors.jsonl.partial"))] == TEXTS[:2]

    source.write_text("\n".join([*lines[:3], json.dumps({"text": TEXTS[3]})]) + "\n")  # the user fixes line 4
    encoded = _encoded_texts(monkeypatch)
    assert main([*argv, "--max-new-tokens", "2"]) == 0
    assert encoded == TEXTS[2:4], "the finished chunk is not encoded again"
    assert [r["text"] for r in _records(output)] == TEXTS[:4]
    assert "2 kept from the interrupted run" in capsys.readouterr().err
    assert sorted(p.name for p in output.parent.iterdir()) == ["vectors.jsonl"]


def test_a_rerun_with_other_settings_or_input_is_refused(tiny_backbone, tmp_path, capsys):
    source = tmp_path / "texts.jsonl"
    source.write_text("\n".join(json.dumps({"text": t}) for t in [*TEXTS[:2], "  "]) + "\n")
    output = tmp_path / "vectors.jsonl"
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--chunk-size", "2"]
    assert main([*argv, "--max-new-tokens", "2"]) == 2
    capsys.readouterr()
    assert main([*argv, "--max-new-tokens", "3"]) == 2
    err = capsys.readouterr().err
    assert "holds the finished part of an earlier run with other model" in err and "to start over" in err
    source.write_text("\n".join(json.dumps({"text": t}) for t in ["another text", *TEXTS[1:3]]) + "\n")
    assert main([*argv, "--max-new-tokens", "2"]) == 2
    assert "Line 1 of" in capsys.readouterr().err
    assert len(_records(output.with_name("vectors.jsonl.partial"))) == 2, "a refused rerun keeps the finished part"


def test_texts_are_read_lazily(tmp_path):
    source = tmp_path / "texts.jsonl"
    source.write_text('{"text": "one"}\n{"text": "two"}\n{oops\n')
    texts = iter_texts(source)
    assert [next(texts), next(texts)] == ["one", "two"], "lines before a bad one are served before it is read"
    with pytest.raises(ValueError, match="texts.jsonl:3 is not valid JSON"):
        next(texts)


def test_bad_chunk_size_is_named(tiny_backbone, capsys):
    assert main(["encode", str(tiny_backbone), "--text", "x", "--chunk-size", "0"]) == 2
    assert "--chunk-size must be a positive integer, got 0" in capsys.readouterr().err


_KILLABLE = """
import sys, time
from pathlib import Path
import grace_st.streaming as streaming
from grace_st.cli import main
original, calls = streaming.encode_with_rationales, []
def encode_then_wait(model, chunk, **kwargs):
    calls.append(chunk)
    if len(calls) == 2:  # the first chunk is on disk: tell the test, then wait to be killed
        Path(sys.argv[1]).write_text("first chunk done")
        time.sleep(120)
    return original(model, chunk, **kwargs)
streaming.encode_with_rationales = encode_then_wait
main(sys.argv[2:])
"""


def _run_until_killed(argv, marker, signum):
    """Run ``grace encode`` in a subprocess, send ``signum`` once its first chunk is written; return its status."""
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(marker), *argv], env=env)
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the subprocess never reached its second chunk"
    process.send_signal(signum)
    return process.wait(timeout=60)


@pytest.mark.parametrize("signum", ["SIGKILL", "SIGTERM"])
def test_a_killed_run_is_continued_by_the_same_command(tiny_backbone, tmp_path, monkeypatch, capsys, signum):
    """kill -9 (or SIGTERM) after the first chunk: the rerun encodes only the texts that were not written, and the
    output equals an uninterrupted run's."""
    import signal

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    output = tmp_path / "out" / "vectors.jsonl"
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--chunk-size", "2", "--max-new-tokens", "4"]
    status = _run_until_killed([*argv, "--output", str(output)], tmp_path / "marker", getattr(signal, signum))
    assert status == -getattr(signal, signum)
    assert not output.exists()
    assert [r["text"] for r in _records(output.with_name("vectors.jsonl.partial"))] == TEXTS[:2]

    encoded = _encoded_texts(monkeypatch)
    assert main([*argv, "--output", str(output)]) == 0
    assert encoded == TEXTS[2:], "no finished text is encoded again"
    monkeypatch.undo()
    assert main([*argv, "--output", str(tmp_path / "uninterrupted.jsonl")]) == 0
    _assert_same_output(output, tmp_path / "uninterrupted.jsonl")
    assert sorted(p.name for p in output.parent.iterdir()) == ["vectors.jsonl"]


def test_the_progress_bar_counts_the_resumed_texts(tiny_backbone, tmp_path, capsys):
    source = tmp_path / "texts.jsonl"
    source.write_text("\n".join(json.dumps({"text": t}) for t in [*TEXTS[:2], " "]) + "\n")
    output = tmp_path / "vectors.jsonl"
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--chunk-size", "2"]
    assert main([*argv, "--max-new-tokens", "2", "--no-progress"]) == 2
    assert "Encoding" not in capsys.readouterr().err
    source.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS[:3]) + "\n")
    assert main([*argv, "--max-new-tokens", "2", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "Encoding: 100%" in err and "3/3" in err and "resumed=2" in err
