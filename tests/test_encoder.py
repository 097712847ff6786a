"""The GRACE sentence-transformers model as a user drives it: encode, prompts, save and reload, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TEXTS
from sentence_transformers import SentenceTransformer

from grace_st import encode_with_rationales, save_grace_model
from grace_st.published_files import MODULE_CODE_FILES


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_save_and_reload_gives_identical_embeddings_and_settings(build_tiny, tmp_path):
    model = build_tiny(max_new_tokens=6, layer=-2, instruction="Explain the text.")
    before = model.encode(TEXTS)
    save_grace_model(model, tmp_path / "m")
    reloaded = SentenceTransformer(str(tmp_path / "m"), trust_remote_code=True, device="cpu")
    np.testing.assert_array_equal(reloaded.encode(TEXTS), before)
    assert reloaded[0].get_config_dict() == model[0].get_config_dict()
    assert reloaded.prompts == model.prompts
    saved = json.loads((tmp_path / "m" / "grace_config.json").read_text())
    assert saved["layer"] == -2 and saved["max_new_tokens"] == 6 and saved["instruction"] == "Explain the text."
    assert [type(m).__name__ for m in reloaded] == ["RationaleGenerator", "Pooling", "Normalize"]


def test_reloaded_model_saves_again_self_contained(grace_tiny, tmp_path):
    """A model loaded from a folder (its class now comes from the folder's code) saves a loadable folder too."""
    save_grace_model(grace_tiny, tmp_path / "a")
    loaded = SentenceTransformer(str(tmp_path / "a"), trust_remote_code=True, device="cpu")
    loaded.save_pretrained(str(tmp_path / "b"))
    modules = json.loads((tmp_path / "b" / "modules.json").read_text())
    assert modules[0]["type"] == "rationale_generator.RationaleGenerator"
    for name in MODULE_CODE_FILES:
        assert (tmp_path / "b" / name).exists(), name
    again = SentenceTransformer(str(tmp_path / "b"), trust_remote_code=True, device="cpu")
    np.testing.assert_array_equal(again.encode(TEXTS[:2]), grace_tiny.encode(TEXTS[:2]))


def test_same_text_same_vector_whatever_batch_size_and_neighbours(grace_tiny):
    alone = np.stack([grace_tiny.encode([t])[0] for t in TEXTS])
    for batch_size in (2, 3, 16):
        batched = grace_tiny.encode(TEXTS, batch_size=batch_size)
        assert _cos(alone, batched).min() > 1 - 1e-4, batch_size
    shuffled = [TEXTS[i] for i in (4, 2, 0, 3, 1)] + ["an unrelated neighbour text that is rather long indeed"]
    vectors = grace_tiny.encode(shuffled, batch_size=6)
    assert _cos(alone[[4, 2, 0, 3, 1]], vectors[:5]).min() > 1 - 1e-4


def test_greedy_is_deterministic_and_sampling_repeats_with_seed(build_tiny):
    greedy = build_tiny()
    np.testing.assert_array_equal(greedy.encode(TEXTS), greedy.encode(TEXTS))
    sampled = build_tiny(do_sample=True, seed=7, max_new_tokens=12)
    np.testing.assert_array_equal(sampled.encode(TEXTS), sampled.encode(TEXTS))
    other_seed = build_tiny(do_sample=True, seed=8, max_new_tokens=12)
    assert not np.allclose(sampled.encode(TEXTS), other_seed.encode(TEXTS)), "a different seed samples differently"


def test_query_and_document_prompts_reach_the_module(build_tiny, monkeypatch):
    model = build_tiny(instruction="Default instruction.")
    model.prompts = {"query": "Explain what the question asks.", "document": "Explain the document."}
    seen = []
    original = type(model[0]).preprocess

    def spy(self, inputs, prompt=None, **kwargs):
        seen.append(prompt)
        return original(self, inputs, prompt=prompt, **kwargs)

    monkeypatch.setattr(type(model[0]), "preprocess", spy)
    q = model.encode_query(["what do cats sit on?"])
    d = model.encode_document(["what do cats sit on?"])
    plain = model.encode(["what do cats sit on?"])
    assert seen == ["Explain what the question asks.", "Explain the document.", None]
    assert not np.allclose(q, d), "a different instruction gives a different vector"
    assert not np.allclose(q, plain)


def test_encode_with_rationales_matches_encode(grace_tiny):
    encoded = encode_with_rationales(grace_tiny, TEXTS[:3], batch_size=2)
    np.testing.assert_allclose(np.stack([e.embedding for e in encoded]), grace_tiny.encode(TEXTS[:3]), atol=1e-6)
    assert [e.text for e in encoded] == TEXTS[:3]
    assert all(isinstance(e.rationale, str) for e in encoded)
    assert set(encoded[0].to_json()) == {"text", "rationale", "embedding"}


def test_encode_with_rationales_rejects_a_non_grace_model():
    from sentence_transformers.sentence_transformer.modules import Normalize

    with pytest.raises(TypeError, match="needs a GRACE model"):
        encode_with_rationales(SentenceTransformer(modules=[Normalize()]), ["x"])


def test_model_card_tells_users_to_trust_remote_code(grace_tiny, tmp_path):
    save_grace_model(grace_tiny, tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "trust_remote_code=True" in card
    assert "library_name: sentence-transformers" in card and "- grace" in card
    assert "max_new_tokens" in card, "the encoding settings are in the card"


def test_save_is_atomic_and_refuses_to_clobber(grace_tiny, tmp_path, monkeypatch):
    target = tmp_path / "m"
    save_grace_model(grace_tiny, target)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_grace_model(grace_tiny, target)

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(grace_tiny), "save_pretrained", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_grace_model(grace_tiny, target, overwrite=True)
    assert (target / "modules.json").exists(), "a failed save leaves the previous model intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"], "no temporary folder is left behind"


def test_max_seq_length_is_the_input_token_limit(grace_tiny):
    assert grace_tiny.max_seq_length == grace_tiny[0].max_input_tokens == 64
    grace_tiny.max_seq_length = 16
    with pytest.warns(UserWarning, match="max_input_tokens=16"):
        grace_tiny.encode(["the cat sat on the mat " * 10])
    with pytest.raises(ValueError, match="exceeds the backbone's context"):
        grace_tiny.max_seq_length = 10_000
    assert grace_tiny.max_seq_length == 16


def test_config_with_an_unknown_key_is_refused_naming_the_valid_keys(grace_tiny, tmp_path):
    """A key this version does not save is refused, not dropped: the folder's settings would silently change."""
    folder = save_grace_model(grace_tiny, tmp_path / "m")
    config = json.loads((folder / "grace_config.json").read_text())
    (folder / "grace_config.json").write_text(json.dumps({**config, "future_setting": 3}))
    with pytest.raises(ValueError, match=r"\['future_setting'\] that are not saved GRACE settings.*'max_new_tokens'"):
        SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")


def test_max_new_tokens_can_be_changed_within_the_context(grace_tiny):
    grace_tiny[0].max_new_tokens = 3
    out = grace_tiny.encode(TEXTS[:2], output_value=None)
    assert all(o["rationale_ids"].shape[0] <= 3 for o in out)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        grace_tiny[0].max_new_tokens = 0
    with pytest.raises(ValueError, match="exceeds the backbone's context"):
        grace_tiny[0].max_new_tokens = 5000
    assert grace_tiny[0].max_new_tokens == 3
