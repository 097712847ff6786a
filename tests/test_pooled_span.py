"""The vector is the mean, over exactly the documented tokens, of the last layer's hidden states, L2-normalised.

The expected vectors are recomputed by hand: each row's ``prefix + text + suffix + rationale[: first end token]``
run *alone* (no padding) through the backbone, averaged over everything but the instruction prefix. The two-pass
path gets rationales forced through ``generate``; the single pass (the default) is checked on sampled rationales
whose end tokens are chosen so that rows end mid-way, at their first token, or never.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS

from grace_st.modeling.pooling import embed_sequences
from grace_st.rationale_generator import two_pass_generation


def _forced_generate(tokenizer, texts, rationales):
    """A ``generate`` whose rationale for ``texts[i]`` is ``rationales[i]`` (right-padded), in whatever row order
    sentence-transformers batches the texts (it sorts them by length)."""

    def generate(input_ids, attention_mask, generation_config):
        pad = generation_config.pad_token_id
        tail = torch.full((input_ids.shape[0], max(len(r) for r in rationales)), pad, dtype=torch.long)
        for row, prompt in enumerate(input_ids):
            decoded = tokenizer.decode(prompt)
            (index,) = [i for i, text in enumerate(texts) if text + "<|im_end|>" in decoded]
            tail[row, : len(rationales[index])] = torch.tensor(rationales[index])
        return torch.cat([input_ids, tail], dim=1)

    return generate


def _hand_vector(generator, text, rationale, pooled_from):
    tok, end = generator.tokenizer, set(generator.end_ids)
    template = generator.template(generator.instruction)
    kept = []
    for t in rationale:
        kept.append(t)
        if t in end:
            break
    text_ids = tok(text, add_special_tokens=False)["input_ids"]
    ids = list(template.prefix_ids) + text_ids + list(template.suffix_ids) + kept
    with torch.no_grad():
        hidden = generator.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    start = len(template.prefix_ids) if pooled_from == "text" else len(ids) - len(kept)
    return F.normalize(hidden[start:].mean(0), dim=-1)


def test_vector_is_mean_over_text_glue_and_rationale_through_first_end_token(build_tiny):
    grace_tiny = build_tiny()
    generator = grace_tiny[0]
    end = generator.end_ids[0]
    rationales = [[40, 41, end, 42, 43], [50, 51, 52, 53, 54], [end, 60, 61]]  # end mid-way, no end, end first
    texts = ["A cat sat on the mat.", "Stock markets fell sharply today.", "where is the station?"]
    generator.model.generate = _forced_generate(generator.tokenizer, texts, rationales)
    with two_pass_generation():  # the forced rationales go through generate()
        got = grace_tiny.encode(texts, batch_size=3, convert_to_tensor=True)
    for text, rationale, vector in zip(texts, rationales, got, strict=True):
        expected = _hand_vector(generator, text, rationale, pooled_from="text")
        assert torch.allclose(vector, expected, atol=1e-5), (text, (vector - expected).abs().max())
    assert torch.allclose(got.norm(dim=-1), torch.ones(3), atol=1e-5), "vectors are L2-normalised"


def test_rationale_only_span(build_tiny):
    model = build_tiny(span="rationale")
    generator = model[0]
    end = generator.end_ids[0]
    rationales = [[40, 41, end, 42], [50, 51, 52, 53]]
    texts = ["A cat sat on the mat.", "Stock markets fell."]
    generator.model.generate = _forced_generate(generator.tokenizer, texts, rationales)
    with two_pass_generation():  # the forced rationales go through generate()
        got = model.encode(texts, convert_to_tensor=True)
    for text, rationale, vector in zip(texts, rationales, got, strict=True):
        expected = _hand_vector(generator, text, rationale, pooled_from="rationale")
        assert torch.allclose(vector, expected, atol=1e-5)


@pytest.mark.parametrize("span", ["input_and_rationale", "rationale"])
def test_single_pass_vector_is_mean_over_the_documented_tokens(build_tiny, span):
    model = build_tiny(span=span, do_sample=True, seed=0, max_new_tokens=8)
    generator = model[0]
    free = [out["rationale_ids"].tolist() for out in model.encode(TEXTS, output_value=None)]
    # New end tokens: text 0's fourth token (it ends mid-way) and text 2's first (it ends at once).
    generator.end_ids = sorted({*generator.end_ids, free[0][3], free[2][0]})
    outs = model.encode(TEXTS, output_value=None)
    lengths = [int(out["rationale_mask"].sum()) for out in outs]
    assert lengths[0] == free[0].index(free[0][3]) + 1 < 8 and lengths[2] == 1
    assert 8 in lengths, "some rationale runs to max_new_tokens without an end token"
    for text, out in zip(TEXTS, outs, strict=True):
        rationale = out["rationale_ids"].tolist()
        expected = _hand_vector(generator, text, rationale, "text" if span == "input_and_rationale" else "rationale")
        vector = out["sentence_embedding"]
        assert torch.allclose(vector, expected, atol=1e-5), (text, (vector - expected).abs().max())


def test_input_only_span_never_generates_and_pools_text_and_glue(build_tiny):
    """span="input" embeds tokens once per batch: no decode step of any generation path (generate, single pass)."""
    model = build_tiny(span="input")
    generator = model[0]
    calls: list[int] = []
    hook = generator.model.get_input_embeddings().register_forward_hook(lambda module, args, out: calls.append(1))
    texts = ["A cat sat on the mat.", "Stock markets fell sharply today after the announcement."]
    try:
        got = model.encode(texts, batch_size=len(texts), convert_to_tensor=True)
    finally:
        hook.remove()
    assert len(calls) == 1, f"span='input' must not generate, but the model ran {len(calls)} forwards"
    for text, vector in zip(texts, got, strict=True):
        assert torch.allclose(vector, _hand_vector(generator, text, [], pooled_from="text"), atol=1e-5)


def test_forward_counter_sees_generation(build_tiny):
    """The counter above would notice generation: a rationale span runs one forward per generated token or more."""
    model = build_tiny()
    calls: list[int] = []
    hook = model[0].model.get_input_embeddings().register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        model.encode(["A cat sat on the mat."])
    finally:
        hook.remove()
    assert len(calls) > 1


def test_sentence_transformers_chain_equals_shared_pooling_function(grace_tiny):
    """Pooling(mean) + Normalize over the module's outputs == modeling.pooling.embed_sequences (used in training)."""
    features = grace_tiny[0].preprocess(["A cat sat on the mat.", "Stock markets fell."])
    with torch.no_grad():
        out = grace_tiny(features)
    full_ids = torch.cat([out["input_ids"], out["rationale_ids"]], dim=1)
    direct = embed_sequences(grace_tiny[0].model, full_ids, out["sequence_mask"], out["attention_mask"])
    assert torch.allclose(out["sentence_embedding"], direct, atol=1e-6)
