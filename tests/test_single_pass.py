"""The single pass gives the two-pass result: the same rationales as ``generate`` and the same vectors.

Rows are made to end at different steps (mid-way, at the first token, never) by declaring tokens the tiny model
really writes as end tokens, so dropping finished rows from the batch is exercised. The shared tiny backbone
repeats one token under greedy decoding, so greedy tests use a copy with larger random weights, whose greedy
rationales differ from text to text.
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from conftest import TEXTS

from grace_st import build_grace_model
from grace_st.modeling.batching import pack_by_token_budget
from grace_st.modeling.generation import GenerationSettings
from grace_st.modeling.single_pass import generate_with_hidden_states, shared_prefix_length
from grace_st.modeling.two_pass import generate_then_embed
from grace_st.rationale_generator import two_pass_generation


NEIGHBOUR = "an unrelated neighbour text that is rather long indeed"


@pytest.fixture(scope="module")
def lively_backbone(tiny_backbone, tmp_path_factory):
    """The tiny backbone with weights drawn at std 0.3: greedy decoding then writes varied rationales."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("lively")
    model = AutoModelForCausalLM.from_pretrained(tiny_backbone)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.3)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(folder)
    return folder


@pytest.fixture
def lively(lively_backbone):
    def build(**settings):
        settings = {"max_new_tokens": 8, "max_input_tokens": 64, **settings}
        return _with_staggered_ends(build_grace_model(str(lively_backbone), device="cpu", **settings))

    return build


def _with_staggered_ends(model):
    """Add end tokens taken from the model's own rationales, so that rows finish at different steps."""
    generator = model[0]
    free = [out["rationale_ids"].tolist() for out in model.encode(TEXTS, output_value=None)]
    generator.end_ids = sorted({*generator.end_ids, free[0][3], free[2][0]})
    return model


def _encode_both(model, **kwargs):
    one = model.encode(TEXTS, output_value=None, **kwargs)
    with two_pass_generation():
        two = model.encode(TEXTS, output_value=None, **kwargs)
    return one, two


@pytest.mark.parametrize(
    ("span", "layer", "temperature", "top_p"),
    [("input_and_rationale", -1, 1.0, 1.0), ("input_and_rationale", -2, 0.7, 0.9), ("rationale", -1, 1.3, 0.8)],
)
def test_single_pass_equals_generate_then_forward(build_tiny, span, layer, temperature, top_p):
    model = build_tiny(span=span, layer=layer, do_sample=True, seed=3, temperature=temperature, top_p=top_p)
    one, two = _encode_both(_with_staggered_ends(model), batch_size=5)
    lengths = {int(out["rationale_mask"].sum()) for out in one}
    assert len(lengths) > 1, "rows end at different steps"
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a["rationale_ids"], b["rationale_ids"]), "same tokens as generate(), same seed"
        assert torch.equal(a["attention_mask"], b["attention_mask"])
        assert torch.allclose(a["sentence_embedding"], b["sentence_embedding"], atol=1e-5)


def test_greedy_single_pass_equals_two_pass_and_is_batch_invariant(lively):
    model = lively()
    one, two = _encode_both(model, batch_size=3)
    assert len({int(out["rationale_mask"].sum()) for out in one}) > 1, "rows end at different steps"
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a["rationale_ids"], b["rationale_ids"])
        assert torch.allclose(a["sentence_embedding"], b["sentence_embedding"], atol=1e-5)
    alone = [model.encode([text], convert_to_tensor=True)[0] for text in TEXTS]
    mixed = model.encode([NEIGHBOUR, *TEXTS[::-1]], batch_size=4, convert_to_tensor=True)[1:].flip(0)
    for vector, out, other in zip(alone, one, mixed, strict=True):
        assert torch.allclose(vector, out["sentence_embedding"], atol=1e-5)
        assert torch.allclose(vector, other, atol=1e-5)


def test_finished_rows_leave_the_batch(build_tiny):
    model = _with_staggered_ends(build_tiny(do_sample=True, seed=0, max_new_tokens=8))
    generator = model[0]
    rows_per_step = []
    decoder = generator.model.get_decoder()
    hook = decoder.register_forward_pre_hook(
        lambda m, a, k: rows_per_step.append(k["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        outs = model.encode(TEXTS, batch_size=5, output_value=None)
    finally:
        hook.remove()
    lengths = sorted(int(out["rationale_mask"].sum()) for out in outs)
    # the shared instruction prefix once, each row's rest, then step t runs the rows with more than t tokens
    assert rows_per_step == [1, 5] + [sum(n > t for n in lengths) for t in range(max(lengths))]
    assert rows_per_step[-1] < 5


def test_shared_prefix_is_the_common_start_of_the_real_tokens():
    ids = torch.tensor([[0, 0, 7, 8, 9, 5], [7, 8, 9, 6, 2, 3], [0, 7, 8, 4, 4, 4]])
    mask = (ids != 0).long()
    assert shared_prefix_length(ids, mask) == 2
    assert shared_prefix_length(ids[:2], mask[:2]) == 3
    assert shared_prefix_length(ids[:1], mask[:1]) == 0, "a single row has nothing to share"
    same = torch.tensor([[7, 8, 9], [7, 8, 9]])
    assert shared_prefix_length(same, torch.ones_like(same)) == 2, "one token per row is left to prefill"
    right_padded = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    assert shared_prefix_length(ids[1:2].repeat(2, 1), right_padded) == 0, "only plain left padding is shared"


def test_layer_out_of_range_is_named(grace_tiny):
    generator = grace_tiny[0]
    features = generator.preprocess(TEXTS[:2])
    settings = GenerationSettings(max_new_tokens=2)
    args = (features["input_ids"], features["attention_mask"], settings, generator.end_ids, generator.pad_token_id)
    for run in (generate_with_hidden_states, generate_then_embed):
        with pytest.raises(ValueError, match="layer=7 is out of range"):
            run(generator.model, *args, layer=7)


def test_token_budget_packs_longest_first_within_the_budget():
    lengths = [30, 5, 12, 30, 7, 20, 9]
    groups = pack_by_token_budget(lengths, max_new_tokens=10, token_budget=100)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    flat = [lengths[i] for group in groups for i in group]
    assert flat == sorted(lengths, reverse=True)
    for group in groups:
        assert len(group) == 1 or len(group) * (lengths[group[0]] + 10) <= 100
    assert pack_by_token_budget([500], max_new_tokens=10, token_budget=100) == [[0]], "an oversize row runs alone"
    with pytest.raises(ValueError, match="token_budget must be a positive integer"):
        pack_by_token_budget(lengths, 10, 0)


@pytest.mark.parametrize("single_pass", [True, False])
def test_token_budget_groups_do_not_change_any_vector(lively, single_pass):
    with nullcontext() if single_pass else two_pass_generation():
        _check_token_budget_groups(lively())


def _check_token_budget_groups(model):
    unpacked = model.encode([*TEXTS, NEIGHBOUR], output_value=None)
    lengths = model[0].preprocess([*TEXTS, NEIGHBOUR])["attention_mask"].sum(1).tolist()  # 109 to 133 tokens
    model[0].token_budget = 300  # two rows of (prompt + 8 new tokens) per group
    assert [len(group) for group in pack_by_token_budget(lengths, 8, 300)] == [2, 2, 2]
    packed = model.encode([*TEXTS, NEIGHBOUR], output_value=None)
    assert len({int(out["rationale_mask"].sum()) for out in packed}) > 1, "groups end at different steps"
    for a, b in zip(unpacked, packed, strict=True):
        assert torch.equal(a["rationale_ids"], b["rationale_ids"])
        assert torch.equal(a["attention_mask"], b["attention_mask"])
        assert torch.allclose(a["sentence_embedding"], b["sentence_embedding"], atol=1e-5)


def test_bad_token_budget_is_named(build_tiny):
    with pytest.raises(ValueError, match="token_budget must be a positive integer"):
        build_tiny(token_budget=0)


@pytest.mark.parametrize("single_pass", [True, False])
def test_unseeded_sampling_advances_the_stream_and_seeded_leaves_it_alone(build_tiny, single_pass):
    with nullcontext() if single_pass else two_pass_generation():
        _check_sampling_streams(build_tiny)


def _check_sampling_streams(build_tiny):
    unseeded = build_tiny(do_sample=True)
    first, second = (unseeded.encode(TEXTS, output_value=None) for _ in range(2))
    assert any(not torch.equal(a["rationale_ids"], b["rationale_ids"]) for a, b in zip(first, second, strict=True))

    seeded = build_tiny(do_sample=True, seed=3)
    state = torch.random.get_rng_state()
    first, second = (seeded.encode(TEXTS, output_value=None) for _ in range(2))
    assert all(torch.equal(a["rationale_ids"], b["rationale_ids"]) for a, b in zip(first, second, strict=True))
    assert torch.equal(state, torch.random.get_rng_state()), "a seeded encode does not disturb the caller's stream"
