"""Refilled decoding (continuous batching) gives every text the vector and rationale it gets alone.

The lively tiny backbone (larger random weights, varied greedy rationales) with extra end tokens makes rows finish
at different steps, so rows leave and newcomers join a running batch whose cache columns have moved on.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TEXTS
from test_single_pass import NEIGHBOUR, lively, lively_backbone  # noqa: F401  (fixtures)

from grace_st.modeling.refill import prefill_buckets, refill_rows
from grace_st.modeling.single_pass import shared_prefix_length
from grace_st.rationales import encode_with_rationales, refilled


MORE = [*TEXTS, NEIGHBOUR, "cats", "a very short one", "Interest rates rose again in the spring."]


def _rows_per_call(model, run):
    """Rows of every decoder call during ``run()`` (prefills and decode steps)."""
    calls = []
    decoder = model[0].model.get_decoder()
    hook = decoder.register_forward_pre_hook(
        lambda m, a, k: calls.append(tuple(k["input_ids"].shape)), with_kwargs=True
    )
    try:
        return run(), calls
    finally:
        hook.remove()


def _check_same(outs, alone):
    lengths = {int(out["rationale_mask"].sum()) for out in outs}
    assert len(lengths) > 2, "rows end at different steps"
    for out, single in zip(outs, alone, strict=True):
        mask = out["rationale_mask"].bool()
        assert torch.equal(out["rationale_ids"][mask], single["rationale_ids"][single["rationale_mask"].bool()])
        assert torch.equal(out["attention_mask"].sum(), single["attention_mask"].sum())
        assert torch.allclose(out["sentence_embedding"], single["sentence_embedding"], atol=1e-5)


@pytest.mark.parametrize("decode_rows", [1, 3])
def test_refilled_batch_gives_each_text_its_own_vector_and_rationale(lively, decode_rows):  # noqa: F811
    model = lively()
    alone = [model.encode([text], output_value=None)[0] for text in MORE]
    outs, calls = _rows_per_call(
        model, lambda: model.encode(MORE, batch_size=len(MORE), decode_rows=decode_rows, output_value=None)
    )
    _check_same(outs, alone)
    steps = [rows for rows, width in calls if width == 1]
    assert max(steps) == decode_rows, "never more rows in flight than asked for"
    prefills = [rows for rows, width in calls if width > 1]
    assert len(prefills) > 2 and max(prefills) <= decode_rows, "newcomers are prefilled as groups of their own"
    features = model[0].preprocess(MORE)
    shared = shared_prefix_length(features["input_ids"], features["attention_mask"])
    assert shared > 0 and calls.count((1, shared)) == 1, "the instruction prefix is run once for all groups"
    if decode_rows > 1:
        assert sum(steps) / len(steps) > decode_rows - 1, "finished rows are refilled: steps stay (nearly) full"


def test_a_greedy_batch_prefills_in_runs_of_similar_length_with_its_own_vectors(lively):  # noqa: F811
    model = lively()
    texts = [*MORE, " ".join(["a long document about the weather and the sea"] * 4)]
    alone = [model.encode([text], output_value=None)[0] for text in texts]
    outs, calls = _rows_per_call(model, lambda: model.encode(texts, batch_size=len(texts), output_value=None))
    _check_same(outs, alone)
    prefills = [(rows, width) for rows, width in calls if width > 1]
    assert len(prefills) > 2, "the long text is prefilled apart from the short ones, not padded for all"
    assert sum(rows for rows, _ in prefills[1:]) == len(texts), "every prompt is prefilled once"
    steps = [rows for rows, width in calls if width == 1]
    assert steps[0] == len(texts), "then all rows decode together"


def test_prefill_buckets_weigh_padding_against_calls():
    assert prefill_buckets([50, 10, 10, 10], call_tokens=8) == [0, 1]  # 50 + 30 + 16 < 200 + 8
    assert prefill_buckets([12, 11, 10, 10], call_tokens=8) == [0]  # 48 + 8: no split earns its call
    assert prefill_buckets([5], call_tokens=0) == [0]
    with pytest.raises(ValueError, match="longest first"):
        prefill_buckets([1, 2])


def test_refill_keeps_the_budget_and_leaves_sampling_alone(lively):  # noqa: F811
    assert refill_rows(64, widest=100, max_new_tokens=28, token_budget=1280) == 10
    model = lively(do_sample=True, seed=5)
    plain = model.encode(MORE, batch_size=len(MORE), output_value=None)
    outs, calls = _rows_per_call(
        model, lambda: model.encode(MORE, batch_size=len(MORE), decode_rows=2, output_value=None)
    )
    assert max(rows for rows, width in calls if width == 1) > 2, "sampling decodes the batch as given"
    for a, b in zip(plain, outs, strict=True):
        assert torch.equal(a["rationale_ids"], b["rationale_ids"])


def test_corpus_path_refills_and_matches_plain_batches(lively):  # noqa: F811
    model = lively()
    assert refilled(model, 2, 8) == {"batch_size": 8, "decode_rows": 2}
    plain = model.encode(MORE, batch_size=2, output_value=None)
    encoded, calls = _rows_per_call(model, lambda: encode_with_rationales(model, MORE, batch_size=2))
    assert len([1 for rows, width in calls if width == 1]) < sum(int(o["rationale_mask"].sum()) for o in plain)
    for item, out in zip(encoded, plain, strict=True):
        assert item.rationale == model[0].decode_rationale(out["rationale_ids"], out["rationale_mask"])
        assert torch.allclose(torch.from_numpy(item.embedding), out["sentence_embedding"], atol=1e-5)
