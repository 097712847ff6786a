"""The single pass's CPU decode machinery gives transformers' own results: the slot KV cache, the packed linear
layers (more in ``test_packed_linears.py``) and the decode-step attention.

The end-to-end equality (single pass == generate then forward) is in ``test_single_pass.py``; these tests pin the
pieces on their own so a failure names the piece.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from grace_st.modeling import cpu_linears
from grace_st.modeling.cpu_decode_attention import IMPLEMENTATION, cpu_decode_attention, decode_attention
from grace_st.modeling.cpu_decode_layer import lean_decode_layers
from grace_st.modeling.cpu_linears import packed_linears
from grace_st.modeling.single_pass import greedy_tokens
from grace_st.modeling.slot_cache import SlotLayer, compaction_order, decode_cache


def _config(**overrides) -> LlamaConfig:
    settings = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2)
    settings.update(num_attention_heads=4, num_key_value_heads=2, **overrides)
    return LlamaConfig(**settings)


def test_compaction_moves_only_survivors_from_behind_into_the_holes():
    finished = torch.tensor([False, True, True, False, False, True, False])
    order = compaction_order(finished)
    assert order.tolist() == [0, 4, 6, 3]  # rows 0 and 3 stay; 4 and 6 fill the holes at 1 and 2
    assert sorted(order.tolist()) == (~finished).nonzero().squeeze(1).tolist()
    assert compaction_order(torch.tensor([True, False])).tolist() == [1]
    assert compaction_order(torch.tensor([False, False])).tolist() == [0, 1]


def test_slot_layer_holds_what_a_dynamic_layer_holds_through_prefix_fanout_steps_and_row_drops():
    generator = torch.Generator().manual_seed(0)

    def states(rows: int, new: int) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.randn((rows, 2, new, 4), generator=generator) for _ in range(2))

    slot, dynamic = SlotLayer(capacity=12), DynamicLayer()
    prefix = states(1, 3)  # the shared prefix: one row, then one copy per row
    for layer in (slot, dynamic):
        layer.update(*prefix)
        layer.batch_repeat_interleave(5)
    rest = states(5, 2)
    steps = [rest, *(states(n, 1) for n in (5, 5, 3, 3, 2))]
    drops = {2: torch.tensor([False, True, False, False, True]), 4: torch.tensor([True, False, False])}
    for step, new in enumerate(steps):
        slot_out, dynamic_out = slot.update(*new), dynamic.update(*new)
        for got, want in zip(slot_out, dynamic_out, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert slot.get_seq_length() == dynamic.get_seq_length()
        if step in drops:
            order = compaction_order(drops[step])
            slot.batch_select_indices(order)
            dynamic.batch_select_indices(order)
    with pytest.raises(RuntimeError, match="holds 12 positions"):
        slot.update(*states(1, 10))


def test_full_attention_backbones_get_slots_and_others_keep_transformers_cache():
    assert all(isinstance(layer, SlotLayer) for layer in decode_cache(_config(), capacity=8).layers)
    sliding = decode_cache(_config(layer_types=["sliding_attention", "full_attention"], sliding_window=4), 8)
    assert isinstance(sliding, DynamicCache)
    assert not any(isinstance(layer, SlotLayer) for layer in sliding.layers)


def test_slot_cache_decode_matches_the_dynamic_cache_through_the_model():
    torch.manual_seed(0)
    model = LlamaForCausalLM(_config()).eval()
    ids = torch.randint(0, 64, (3, 6))
    results = []
    for cache in (decode_cache(model.config, capacity=10), DynamicCache(config=model.config)):
        with torch.no_grad():
            logits = [model(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]]
            for step in range(4):
                logits.append(model(input_ids=ids[:, step : step + 1], cache=cache, use_cache=True).logits[:, -1])
        results.append(torch.stack(logits))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-6)


def test_packed_linears_leave_wrapped_non_fp32_or_one_row_calls_alone(monkeypatch):
    model = LlamaForCausalLM(_config()).eval()
    sentinel = model.lm_head.forward
    model.lm_head.forward = sentinel  # what accelerate's hooks do: a forward of the instance's own
    with packed_linears(model, rows=8):
        assert model.lm_head.forward is sentinel
        assert "forward" in vars(model.model.layers[0].mlp.up_proj)
    assert model.lm_head.forward is sentinel
    del model.lm_head.forward
    with packed_linears(model, rows=1):
        assert "forward" not in vars(model.lm_head)  # packing would cost more than a one-row decode saves
    monkeypatch.setattr(cpu_linears, "PACK_MAX_BYTES", 1024)
    with packed_linears(model, rows=8):
        assert "forward" not in vars(model.lm_head)  # no second copy of weights this large
    monkeypatch.undo()
    model.to(torch.bfloat16)
    with packed_linears(model, rows=8):
        assert "forward" not in vars(model.lm_head)


def _attention_inputs(queries: int, mask_kind: str) -> tuple:
    generator = torch.Generator().manual_seed(queries)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    query = torch.randn((4, 6, queries, 8), generator=generator)
    cached = torch.randn((2, 4, 2, 20, 8), generator=generator)  # a slot buffer: 20 columns, 11 filled
    key, value = cached[0, :, :, :11], cached[1, :, :, :11]
    mask = None
    if mask_kind != "none":
        mask = torch.ones((4, 1, queries, 11), dtype=torch.bool)
        mask[1, ..., :3] = False  # left padding of row 1
        if mask_kind == "float":
            mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    return module, query, key, value, mask


@pytest.mark.parametrize("mask_kind", ["bool", "float", "none"])
def test_decode_attention_equals_sdpa_for_grouped_heads_on_a_cache_view(mask_kind):
    module, query, key, value, mask = _attention_inputs(1, mask_kind)
    got, _ = decode_attention(module, query, key, value, mask, scaling=0.3)
    want, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    assert got.shape == want.shape == (4, 1, 6, 8)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_decode_attention_converts_each_new_mask_once_and_never_reuses_a_stale_one():
    module, query, key, value, mask = _attention_inputs(1, "bool")
    other = mask.clone()
    other[2, ..., :5] = False  # same shape, other content: a later step's mask
    for current in (mask, mask, other, mask.clone()):
        got, _ = decode_attention(module, query, key, value, current)
        want, _ = sdpa_attention_forward(module, query, key, value, current)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_decode_attention_hands_prefill_and_other_features_to_sdpa():
    module, query, key, value, mask = _attention_inputs(5, "bool")
    got, _ = decode_attention(module, query, key, value, mask)
    want, _ = sdpa_attention_forward(module, query, key, value, mask)
    torch.testing.assert_close(got, want, rtol=0, atol=0)  # the very same call
    module, query, key, value, mask = _attention_inputs(1, "bool")
    windowed, _ = decode_attention(module, query, key, value, mask, sliding_window=4)
    torch.testing.assert_close(windowed, sdpa_attention_forward(module, query, key, value, mask)[0], rtol=0, atol=0)


def _decode_logits(model: LlamaForCausalLM, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        logits = [model(input_ids=ids, attention_mask=mask, cache=cache).logits[:, -1]]
        for step in range(steps):
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            logits.append(model(input_ids=ids[:, step : step + 1], attention_mask=mask, cache=cache).logits[:, -1])
    return torch.stack(logits)


def test_cpu_decode_attention_gives_the_models_logits_and_restores_its_setting():
    torch.manual_seed(0)
    model = LlamaForCausalLM(_config()).eval()
    ids, mask = torch.randint(0, 64, (3, 6)), torch.ones(3, 6, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    plain = _decode_logits(model, ids, mask, steps=3)
    with cpu_decode_attention(model):
        assert model.config._attn_implementation == IMPLEMENTATION
        fast = _decode_logits(model, ids, mask, steps=3)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(ValueError, match="the block fails"), cpu_decode_attention(model):
        raise ValueError("the block fails")
    assert model.config._attn_implementation == "sdpa"
    model.to(torch.bfloat16)
    with cpu_decode_attention(model):
        assert model.config._attn_implementation == "sdpa"  # not fp32: left alone


def test_greedy_tokens_pick_argmax_s_first_maximum_on_ties():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 3, (64, 40), generator=generator).float()  # many ties in every row
    logits[5] = float("-inf")
    logits[5, 7] = logits[5, 9] = 0.0
    assert torch.equal(greedy_tokens(logits), logits.argmax(dim=-1))
    assert int(greedy_tokens(logits)[5]) == 7


@pytest.mark.parametrize("bias", [False, True])
def test_lean_decode_layers_give_the_models_logits_and_restore_the_layers(bias):
    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(attention_bias=bias)).eval()  # q/k/v biases: Qwen2's layout
    ids, mask = torch.randint(0, 64, (3, 6)), torch.ones(3, 6, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    plain = _decode_logits(model, ids, mask, steps=4)
    layers = model.model.layers
    with lean_decode_layers(model):
        assert not any("forward" in vars(layer) for layer in layers), "only under the bmm decode attention"
    with cpu_decode_attention(model), lean_decode_layers(model):
        assert all("forward" in vars(layer) for layer in layers)
        lean = _decode_logits(model, ids, mask, steps=4)
    torch.testing.assert_close(lean, plain, rtol=1e-5, atol=1e-5)
    assert not any("forward" in vars(layer) for layer in layers)
    model.config.hidden_act = "gelu"  # another activation: not the forward this reproduces
    with cpu_decode_attention(model), lean_decode_layers(model):
        assert not any("forward" in vars(layer) for layer in layers)
