"""One corpus over two CPU processes (sentence-transformers' pool): the one-process vectors, one shared cache."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from grace_st.cli import main
from grace_st.errors import GraceUserError
from grace_st.mteb_encoder import GraceEncoder
from grace_st.rationale_cache import EncodingCache


TEXTS = [f"text number {i} about cats and the {word}" for i, word in enumerate(["rain", "sun", "mat", "sea"] * 3)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _cosines(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_two_processes_give_the_one_process_vectors_and_fill_one_cache(grace_tiny, tmp_path):
    one = GraceEncoder(grace_tiny, cache=False).encode_texts(TEXTS, prompt=None, batch_size=4)
    path = tmp_path / "c.sqlite"
    encoder = GraceEncoder(grace_tiny, cache=str(path), devices=["cpu", "cpu"])
    try:
        two = encoder.encode_texts(TEXTS, prompt=None, batch_size=4)
        workers = encoder._pool["processes"]
        assert len(workers) == 2 and all(worker.is_alive() for worker in workers)
        pids = [worker.pid for worker in workers]
    finally:
        encoder.close()
    assert not any(_alive(pid) for pid in pids), "close() stops the workers"
    assert _cosines(one, two).min() > 1 - 1e-5
    assert len(EncodingCache(path)) == len(TEXTS), "the main process wrote every encoding to the cache"
    again = GraceEncoder(grace_tiny, cache=str(path), devices=["cpu", "cpu"])
    np.testing.assert_array_equal(again.encode_texts(TEXTS, prompt=None), two)
    assert again.texts_generated == 0 and again._pool is None, "a fully cached corpus starts no worker"


def test_grace_encode_devices_gives_the_one_process_output(tiny_backbone, tmp_path):
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--max-new-tokens", "4", "--chunk-size", "5"]
    assert main([*argv, "--output", str(tmp_path / "one.jsonl")]) == 0
    assert main([*argv, "--output", str(tmp_path / "two.jsonl"), "--devices", "cpu", "cpu"]) == 0
    one, two = ([json.loads(line) for line in (tmp_path / name).open()] for name in ("one.jsonl", "two.jsonl"))
    assert [(r["text"], r["rationale"]) for r in one] == [(r["text"], r["rationale"]) for r in two]
    assert _cosines([r["embedding"] for r in one], [r["embedding"] for r in two]).min() > 1 - 1e-5


@pytest.mark.parametrize(("devices", "message"), [(["gpu0"], "'gpu0' is not a torch device"), ([], "non-empty list")])
def test_bad_devices_are_named(grace_tiny, devices, message):
    with pytest.raises(GraceUserError, match=message):
        GraceEncoder(grace_tiny, cache=False, devices=devices)


def test_grace_eval_passes_devices_to_the_encoder(tiny_backbone, tmp_path, capsys):
    argv = ["eval", str(tiny_backbone), "--tasks", "GraceWordNetLexnameClustering", "--output", str(tmp_path)]
    assert main([*argv, "--devices", "cuda:7"]) == 2
    assert "'cuda:7' is not available" in capsys.readouterr().err
