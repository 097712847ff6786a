"""The resumable JSON-lines output on its own: torn lines, foreign partials, two writers, empty runs."""

from __future__ import annotations

import json

import pytest

from grace_st.errors import GraceUserError
from grace_st.resumable_output import ResumableJsonl


def _line(text: str) -> str:
    return json.dumps({"text": text, "rationale": "", "embedding": [0.0]})


def _interrupted(target, manifest, texts, torn: str = ""):
    """Leave ``target``'s partial as a killed run would: ``texts`` written, then maybe half a line."""
    with pytest.raises(KeyboardInterrupt), ResumableJsonl(target, manifest) as output:
        output.resume(iter([]))
        output.write([_line(t) for t in texts])
        if torn:
            output._handle.write(torn.encode())
            output._handle.flush()
        raise KeyboardInterrupt


def test_a_torn_last_line_is_cut_and_the_rest_continues(tmp_path):
    target = tmp_path / "out.jsonl"
    _interrupted(target, {"model": "m"}, ["a", "b"], torn=_line("c")[:10])
    texts = iter(["a", "b", "c", "d"])
    with ResumableJsonl(target, {"model": "m"}) as output:
        assert output.resume(texts) == 2
        output.write([_line(t) for t in texts])
    assert [json.loads(line)["text"] for line in target.read_text().splitlines()] == ["a", "b", "c", "d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_another_manifest_or_a_partial_without_record_is_refused(tmp_path):
    target = tmp_path / "out.jsonl"
    _interrupted(target, {"model": "m", "prompt_name": None}, ["a"])
    with pytest.raises(GraceUserError, match="earlier run with other prompt_name"):
        ResumableJsonl(target, {"model": "m", "prompt_name": "query"}).__enter__()
    (tmp_path / "out.jsonl.partial.json").unlink()
    with pytest.raises(GraceUserError, match="exists without its record"):
        ResumableJsonl(target, {"model": "m"}).__enter__()
    assert (tmp_path / "out.jsonl.partial").read_text() == _line("a") + "\n", "refusals never touch the partial"


def test_two_writers_on_one_output_are_refused(tmp_path):
    target = tmp_path / "out.jsonl"
    with ResumableJsonl(target, {"model": "m"}) as first:
        first.resume(iter([]))
        with pytest.raises(GraceUserError, match="Another run is writing"):
            ResumableJsonl(target, {"model": "m"}).__enter__()
        first.write([_line("a")])
    assert target.read_text() == _line("a") + "\n"


def test_a_run_that_finished_nothing_leaves_nothing(tmp_path):
    target = tmp_path / "out.jsonl"
    _interrupted(target, {"model": "m"}, [])
    assert list(tmp_path.iterdir()) == []
