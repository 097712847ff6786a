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
        partial = list(out_dir.glob(".vectors.jsonl.*.partial"))
        seen_on_disk.append(len(partial[0].read_text().splitlines()) if partial else None)
        assert not output.exists(), "the output appears only once complete"
        return original(model, chunk, **kwargs)

    monkeypatch.setattr(streaming, "encode_with_rationales", spy)
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--max-new-tokens", "4"]
    assert main([*argv, "--chunk-size", "2", "--batch-size", "2"]) == 0
    assert seen_on_disk == [0, 2, 4], "chunks of 2: each chunk's lines are flushed before the next chunk starts"
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["text"] for r in records] == TEXTS
    assert sorted(p.name for p in out_dir.iterdir()) == ["vectors.jsonl"], "no temporary file is left"


def test_chunking_changes_no_vector(grace_tiny):
    whole = encode_with_rationales(grace_tiny, TEXTS, batch_size=4)
    chunked = [item for chunk in encode_stream(grace_tiny, iter(TEXTS), chunk_size=2, batch_size=4) for item in chunk]
    assert [item.text for item in chunked] == TEXTS
    np.testing.assert_allclose(
        np.stack([i.embedding for i in chunked]), np.stack([i.embedding for i in whole]), atol=1e-6
    )
    assert [item.rationale for item in chunked] == [item.rationale for item in whole]


def test_a_bad_text_in_a_later_chunk_leaves_no_output(tiny_backbone, tmp_path, capsys):
    source = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": t}) for t in TEXTS[:3]] + [json.dumps({"text": "   "})]
    source.write_text("\n".join(lines) + "\n")
    output = tmp_path / "out" / "vectors.jsonl"
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--chunk-size", "2"]
    assert main([*argv, "--max-new-tokens", "2"]) == 2
    assert "empty or whitespace-only text" in capsys.readouterr().err
    assert list(output.parent.iterdir()) == [], "neither the output nor a partial file remains"


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


def test_sigterm_during_encode_leaves_no_partial_file(tiny_backbone, tmp_path):
    """``grace encode`` gets SIGTERM while its second chunk is encoded: it dies of SIGTERM and leaves nothing."""
    import signal
    import subprocess
    import sys
    import textwrap

    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    output = tmp_path / "out" / "vectors.jsonl"
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        import grace_st.streaming as streaming
        from grace_st.cli import main
        original = streaming.encode_with_rationales
        calls = []
        def encode_then_terminate(model, chunk, **kwargs):
            calls.append(chunk)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            return original(model, chunk, **kwargs)
        streaming.encode_with_rationales = encode_then_terminate
        main(sys.argv[1:])
        """
    )
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output), "--chunk-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, *argv, "--max-new-tokens", "2"], env=env, timeout=300)
    assert done.returncode == -signal.SIGTERM
    assert list(output.parent.iterdir()) == [], "neither the output nor a partial file remains"
