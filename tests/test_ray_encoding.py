"""The Ray path (optional extra): a local Ray on one CPU gives ``grace encode``'s vectors, as Parquet."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import TEXTS


pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from grace_st.cli import main  # noqa: E402
from grace_st.ray_encoding import GraceBatchEncoder, encode_dataset, start_local_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: one CPU, usage statistics off, no dashboard (start_local_ray's defaults)."""
    ray = pytest.importorskip("ray")
    start_local_ray(num_cpus=1)
    yield ray
    ray.shutdown()


@pytest.fixture
def reference(tiny_backbone, tmp_path):
    """``grace encode --file`` of TEXTS: the records the Ray path must reproduce."""
    source = tmp_path / "texts.jsonl"
    source.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)) + "\n")
    output = tmp_path / "reference.jsonl"
    argv = ["encode", str(tiny_backbone), "--file", str(source), "--output", str(output)]
    assert main([*argv, "--max-new-tokens", "4"]) == 0
    return source, [json.loads(line) for line in output.open()]


def _assert_same(texts, rationales, embeddings, records):
    assert list(texts) == [r["text"] for r in records], "rows keep the input order"
    assert list(rationales) == [r["rationale"] for r in records]
    np.testing.assert_allclose(np.asarray(embeddings), [r["embedding"] for r in records], rtol=0, atol=1e-6)


def test_the_actor_turns_a_text_batch_into_grace_encodes_rows(tiny_backbone, reference):
    """The actor alone (no Ray needed): a pyarrow batch of texts in, text/rationale/embedding rows out."""
    _, records = reference
    table = GraceBatchEncoder(str(tiny_backbone), max_new_tokens=4, batch_size=2)(pa.table({"text": TEXTS}))
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32), "plain fixed-size float vectors"
    _assert_same(table["text"].to_pylist(), table["rationale"].to_pylist(), table["embedding"].to_pylist(), records)


def test_grace_encode_ray_writes_grace_encodes_vectors_as_parquet(local_ray, tiny_backbone, reference, tmp_path):
    source, records = reference
    output = tmp_path / "ray-out"
    argv = ["encode-ray", str(tiny_backbone), "--input", str(source), "--output", str(output), "--actors", "1"]
    assert main([*argv, "--cpus-per-actor", "0.5", "--max-new-tokens", "4", "--batch-size", "2"]) == 0
    table = pq.read_table(output)
    assert table.column_names == ["text", "rationale", "embedding"]
    texts, rationales = table.column("text").to_pylist(), table.column("rationale").to_pylist()
    _assert_same(texts, rationales, table.column("embedding").to_pylist(), records)


def test_a_ray_dataset_is_encoded_by_the_actor_pool(local_ray, tiny_backbone, reference, monkeypatch):
    _, records = reference
    dataset = local_ray.data.from_items([{"text": t} for t in TEXTS])
    rows = encode_dataset(dataset, tiny_backbone, actors=1, cpus_per_actor=0.5, max_new_tokens=4).take_all()
    _assert_same([r["text"] for r in rows], [r["rationale"] for r in rows], [r["embedding"] for r in rows], records)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    start_local_ray()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0", "usage reporting is forced off"


def test_inputs_ray_cannot_read_are_named(local_ray, tiny_backbone, tmp_path, capsys):
    text_file = tmp_path / "texts.txt"
    text_file.write_text("a text\n")
    argv = ["encode-ray", str(tiny_backbone), "--output", str(tmp_path / "out")]
    assert main([*argv, "--input", str(text_file)]) == 2
    assert "neither Parquet (.parquet) nor JSON lines" in capsys.readouterr().err
    assert main([*argv, "--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "No such file or folder" in capsys.readouterr().err
