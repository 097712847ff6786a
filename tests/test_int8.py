"""The opt-in int8 path: weights quantised per output channel, every row computed on its own, off by default."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXTS

from grace_st import load_grace_model, save_grace_model
from grace_st.errors import GraceUserError, GraceUserTypeError
from grace_st.modeling.int8_linears import int8_product, int8_works, quantize


pytestmark = pytest.mark.skipif(not int8_works(), reason="this torch build has no int8 CPU GEMM (torch._int_mm)")


def test_quantised_weights_stay_within_half_a_step_and_the_product_follows():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn((48, 32), generator=generator)
    weight[3] = 0  # an all-zero row: no division by zero
    quantized, scale = quantize(weight)
    assert quantized.dtype == torch.int8 and int(quantized.abs().max()) == 127
    assert bool(((quantized.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-7).all())
    bias, inputs = torch.randn(48, generator=generator), torch.randn((2, 5, 32), generator=generator)
    exact = F.linear(inputs, weight, bias)
    got = int8_product(weight, bias)(inputs)
    assert got.shape == exact.shape
    assert float((got - exact).abs().max()) < 0.05 * float(exact.abs().max())
    assert torch.equal(int8_product(weight, bias)(inputs[:1, :2]), got[:1, :2]), "rows are computed on their own"


def test_int8_encoding_is_batch_invariant_close_to_fp32_and_not_saved(build_tiny, tmp_path):
    model = build_tiny()
    fp32 = model.encode(TEXTS, convert_to_tensor=True)
    model[0].int8 = True
    together = model.encode(TEXTS, batch_size=len(TEXTS), convert_to_tensor=True)
    alone = torch.cat([model.encode([text], convert_to_tensor=True) for text in TEXTS])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert not torch.equal(together, fp32), "the int8 weights were used"
    assert float(F.cosine_similarity(together, fp32).min()) > 0.9
    assert not any("forward" in vars(module) for module in model[0].model.modules()), "modules restored"
    save_grace_model(model, tmp_path / "saved")
    assert load_grace_model(tmp_path / "saved", device="cpu")[0].int8 is False, "a run-time choice, not saved"


def test_int8_refuses_a_non_boolean_and_a_backbone_it_cannot_run(build_tiny):
    with pytest.raises(GraceUserTypeError, match="int8 must be True or False, got 'yes'"):
        build_tiny(int8="yes")
    model = build_tiny(int8=True)
    model[0].model.to(torch.bfloat16)
    with pytest.raises(GraceUserError, match="fp32 backbone on the CPU.*bfloat16.*int8=False"):
        model.encode(TEXTS[:1])
