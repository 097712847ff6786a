"""The contrastive term: pools what the encoder pools, its gradient reaches the trainable parameters, and with
``contrastive_weight: 0`` the loss is TRL's own."""

from __future__ import annotations

import pytest
import torch
from test_training import make_trainer, tiny_args, triples

from grace_st.modeling.pooling import embed_sequences
from grace_st.train.config import GraceConfig
from grace_st.train.contrastive import HiddenStateTap, info_nce, pad_sequences, pooled, prompt_span


def test_info_nce_prefers_the_own_query():
    queries = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    near = torch.nn.functional.normalize(queries + 0.01 * torch.randn(3, 8), dim=-1)
    far = near[[1, 2, 0]]
    own = torch.arange(3)
    assert info_nce(near, own, queries, None, 0.05) < info_nce(far, own, queries, None, 0.05)
    # a hard negative equal to the rollout raises the loss
    assert info_nce(near, own, queries, near, 0.05) > info_nce(near, own, queries, None, 0.05)


def test_anchor_span_pools_text_glue_and_rationale_not_the_prefix():
    from grace_st.train.trainer import _contrastive_columns

    def rows(span):
        columns = [([1, 2, 3, 4, 5], 4), ([1, 2, 3, 4, 5, 6, 7], 5)]
        data = [
            {"grace_example": i, "grace_prefix_len": 2, "grace_anchor_ids": ids, "grace_anchor_prompt_len": n}
            for i, (ids, n) in enumerate(columns)
        ]
        for row in data:
            row["grace_anchor_prefix_len"] = 2
        return _contrastive_columns(data, "unsupervised", span)

    both = rows("input_and_rationale")
    assert both["grace_anchor_span"].tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]]
    assert rows("rationale")["grace_anchor_span"].tolist() == [[0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1, 1]]
    assert both["grace_anchor_mask"].tolist() == [[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    # no rationale marked: the prompt span of the same mask is the same
    assert prompt_span(both["grace_anchor_mask"], 2).tolist() == both["grace_anchor_span"].tolist()


def test_tapped_hidden_states_pool_to_the_encoders_vector(ending_backbone, tmp_path):
    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, contrastive_weight=1.0), triples(4))
    model = trainer.model
    ids, mask = pad_sequences([[5, 6, 7, 8, 9, 10], [11, 12, 13]], pad_id=0)
    span = prompt_span(mask, 1)
    tap = HiddenStateTap(model)
    with tap.capture():
        model(input_ids=ids, attention_mask=mask)  # TRL's forward passes no position ids; RoPE is shift-invariant
    tapped = pooled(tap.hidden(), span)
    expected = embed_sequences(model, ids, mask, span)
    torch.testing.assert_close(tapped, expected, atol=1e-5, rtol=1e-4)


def test_contrastive_gradient_reaches_every_trainable_parameter(ending_backbone, tmp_path):
    # policy gradient off: every change comes from the contrastive term alone
    args = tiny_args(tmp_path, contrastive_weight=1.0, policy_gradient_weight=0.0, max_steps=1)
    trainer = make_trainer(ending_backbone, args, triples(8))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    unchanged = [n for n, p in trainer.model.named_parameters() if torch.equal(before[n], p.detach())]
    assert not unchanged, f"the contrastive term did not reach: {unchanged}"
    logged = [e for e in trainer.state.log_history if "grace/contrastive_loss" in e]
    assert logged and logged[0]["grace/contrastive_loss"] > 0


def test_zero_weight_leaves_trls_loss_unchanged(ending_backbone, tmp_path):
    """On the same step inputs: weight 0 returns TRL's loss exactly; weight w adds exactly w x the logged InfoNCE."""
    from trl import GRPOTrainer

    trainer = make_trainer(ending_backbone, tiny_args(tmp_path, contrastive_weight=1.0, max_steps=1), triples(8))
    seen = []
    original = trainer.compute_loss

    def record(model, inputs, *args, **kwargs):
        seen.append(inputs)
        return original(model, inputs, *args, **kwargs)

    trainer.compute_loss = record
    trainer.train()
    inputs, model = seen[0], trainer.model
    assert "grace_example" in inputs and "grace_anchor_ids" in inputs
    torch.manual_seed(0)
    trl_loss = GRPOTrainer.compute_loss(trainer, model, inputs)
    trainer.args.contrastive_weight = 0.0
    assert torch.equal(original(model, inputs), trl_loss)
    trainer.args.contrastive_weight = 0.5
    combined = original(model, inputs)
    contrastive = trainer._metrics["train"]["grace/contrastive_loss"][-1]
    torch.testing.assert_close(combined, trl_loss + 0.5 * contrastive, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"contrastive_weight": -1.0}, "contrastive_weight=-1.0"),
        ({"contrastive_weight": 0.0, "policy_gradient_weight": 0.0}, "nothing to train"),
        ({"contrastive_temperature": 0.0}, "contrastive_temperature=0.0"),
        ({"contrastive_weight": 1.0, "pooled_layer": -2}, "pooled_layer=-2"),
    ],
)
def test_bad_loss_settings_name_the_value(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        GraceConfig(output_dir=str(tmp_path), bf16=False, **overrides)
