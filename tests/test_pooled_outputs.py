"""``token_states=False``: the model hands back each text's vector and rationale ids, never its per-token states."""

from __future__ import annotations

import numpy as np
import torch
from conftest import TEXTS

from grace_st import encode_with_rationales, load_grace_model, save_grace_model
from grace_st.modeling.encode_io import POOLED_OUTPUTS


def test_pooled_outputs_are_the_vector_and_rationale_only_and_vectors_are_bit_identical(grace_tiny):
    full = grace_tiny.encode(TEXTS, output_value=None, batch_size=2)
    pooled = grace_tiny.encode(TEXTS, output_value=None, batch_size=2, token_states=False)
    assert "token_embeddings" in full[0], "the default keeps every output"
    assert all(set(out) == set(POOLED_OUTPUTS) for out in pooled)
    plain = grace_tiny.encode(TEXTS, batch_size=2, convert_to_tensor=True)
    assert torch.equal(torch.stack([out["sentence_embedding"] for out in pooled]), plain)
    for a, b in zip(full, pooled, strict=True):
        assert torch.equal(a["rationale_ids"], b["rationale_ids"])


def test_encode_with_rationales_never_receives_token_states(grace_tiny, monkeypatch):
    seen, original = [], type(grace_tiny).encode

    def spy(self, *args, **kwargs):
        outputs = original(self, *args, **kwargs)
        seen.extend(set(out) for out in outputs)
        return outputs

    monkeypatch.setattr(type(grace_tiny), "encode", spy)
    encoded = encode_with_rationales(grace_tiny, TEXTS, batch_size=2)
    monkeypatch.undo()
    assert seen and all("token_embeddings" not in keys for keys in seen)
    # the corpus path decodes the whole chunk refilled (other row neighbours): equal to float rounding, not bitwise
    vectors = np.stack([e.embedding for e in encoded])
    np.testing.assert_allclose(vectors, grace_tiny.encode(TEXTS, batch_size=2), rtol=0, atol=1e-6)


def test_a_reloaded_model_keeps_the_option(grace_tiny, tmp_path):
    model = load_grace_model(save_grace_model(grace_tiny, tmp_path / "m"), device="cpu")
    out = model.encode(TEXTS[:2], output_value=None, token_states=False)
    assert set(out[0]) == set(POOLED_OUTPUTS)
