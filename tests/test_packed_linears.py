"""The packed linear layers of the CPU decode: either GEMM library, sibling layers fused into one product, and the
modules given back as they were.

The end-to-end equality (single pass == generate then forward) is in ``test_single_pass.py``; these pin the linear
layers on their own so that a failure names them.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grace_st.errors import GraceUserError
from grace_st.modeling import cpu_gemm, cpu_linears
from grace_st.modeling.cpu_linears import linear_groups, packed_linears


def _model(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    settings = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2)
    settings.update(num_attention_heads=4, num_key_value_heads=2, **overrides)
    return LlamaForCausalLM(LlamaConfig(**settings)).eval()


@pytest.fixture
def backend(request, monkeypatch):
    """Pins the packed GEMM to ``request.param`` for the test; the process's own choice comes back afterwards."""
    if not cpu_gemm._works(request.param):
        pytest.skip(f"this torch build does not run the {request.param} packed linear")
    monkeypatch.setenv("GRACE_CPU_GEMM", request.param)
    cpu_gemm.gemm_backend.cache_clear()
    yield request.param
    cpu_gemm.gemm_backend.cache_clear()


@pytest.mark.parametrize("backend", cpu_gemm.BACKENDS, indirect=True)
def test_packed_linears_give_the_plain_logits_at_any_row_count_and_restore_the_modules(backend):
    model = _model(attention_bias=True)  # biases on q/k/v: the stacked bias is split with the outputs
    ids = torch.randint(0, 64, (6, 5))
    linears = [module for module in model.modules() if isinstance(module, torch.nn.Linear)]
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with packed_linears(model, rows=4):
            assert cpu_gemm.gemm_backend() == backend
            assert all("forward" in vars(module) for module in linears)  # every layer and the head
            packed = [model(input_ids=ids[:rows]).logits for rows in (4, 1, 6)]  # as packed, fewer, more
    assert not any("forward" in vars(module) for module in linears)
    for rows, logits in zip((4, 1, 6), packed, strict=True):
        torch.testing.assert_close(logits, plain[:rows], rtol=1e-5, atol=1e-5)


def test_siblings_share_one_product_only_for_the_same_unchanged_input():
    model = _model()
    attention, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    groups = linear_groups(model)
    sizes = sorted(len(group) for group in groups)
    assert sizes == [1] * 5 + [2, 2, 3, 3]  # o, down twice, the head; gate/up and q/k/v of each layer
    first, second = torch.randn(3, 16), torch.randn(3, 16)
    with torch.no_grad():
        want = [layer.weight @ x.T for layer, x in ((attention.q_proj, first), (attention.k_proj, second))]
        want.append(mlp.up_proj.weight @ first.T)
        with packed_linears(model, rows=3):
            query = attention.q_proj(first)
            key = attention.k_proj(second)  # another input than its sibling's: recomputed, not sliced
            changed = first.clone()
            mlp.gate_proj(changed)
            changed.mul_(0)  # written in place after its sibling read it: the version counter tells
            zeros = mlp.up_proj(changed)
            up = mlp.up_proj(first)
    torch.testing.assert_close(query, want[0].T, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(key, want[1].T, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(zeros, torch.zeros_like(zeros))
    torch.testing.assert_close(up, want[2].T, rtol=1e-5, atol=1e-6)


def test_packed_linears_restore_the_modules_when_the_block_raises():
    model = _model()
    with pytest.raises(RuntimeError, match="inside"), packed_linears(model, rows=4):
        raise RuntimeError("inside the block")
    assert not any("forward" in vars(module) for module in model.modules())


def test_an_unknown_gemm_choice_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("GRACE_CPU_GEMM", "blas")
    cpu_gemm.gemm_backend.cache_clear()
    try:
        with pytest.raises(GraceUserError, match=r"GRACE_CPU_GEMM='blas'.*auto, onednn, mkl"):
            cpu_gemm.gemm_backend()
    finally:
        cpu_gemm.gemm_backend.cache_clear()


def test_the_measured_choice_is_a_backend_that_runs_here(monkeypatch):
    monkeypatch.delenv("GRACE_CPU_GEMM", raising=False)
    cpu_gemm.gemm_backend.cache_clear()
    try:
        chosen = cpu_gemm.gemm_backend()
    finally:
        cpu_gemm.gemm_backend.cache_clear()
    usable = [backend for backend in cpu_gemm.BACKENDS if cpu_gemm._works(backend)]
    assert chosen in usable if usable else chosen is None


def test_the_packed_copy_is_kept_while_the_weights_are_unchanged_and_remade_when_they_change():
    model = _model()
    ids = torch.randint(0, 64, (4, 5))
    with torch.no_grad():
        with packed_linears(model, rows=4):
            first = model.lm_head.forward
            model(input_ids=ids)
        with packed_linears(model, rows=2):
            assert model.lm_head.forward.func.__self__.product is first.func.__self__.product, "kept, not repacked"
        assert cpu_linears._KEPT[model][1] == cpu_linears.PACK_FOR_ROWS, "packed for a full batch, not for 4 rows"
        more = cpu_linears.PACK_FOR_ROWS + 1
        with packed_linears(model, rows=more):  # packed for fewer rows than asked: slow there, so packed anew
            assert model.lm_head.forward.func.__self__.product is not first.func.__self__.product
            first = model.lm_head.forward
            assert cpu_linears._KEPT[model][1] == more
        model.lm_head.weight.mul_(2)  # what an optimiser step does: the weight changes in place
        plain = model(input_ids=ids).logits
        with packed_linears(model, rows=4):
            assert model.lm_head.forward.func.__self__.product is not first.func.__self__.product
            torch.testing.assert_close(model(input_ids=ids).logits, plain, rtol=1e-5, atol=1e-5)
    cpu_linears.release_packed(model)
    assert model not in cpu_linears._KEPT
