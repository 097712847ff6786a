"""GRACE rewards against values computed by hand on 2-d vectors (cosines of 0, 0.6, 0.8 and 1)."""

import pytest
import torch

from grace_st.train.rewards import RewardWeights, supervised_reward, unsupervised_reward


Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# rollouts of example 0: (1,0), (0.6,0.8); of example 1: (0,1), (0.8,0.6). Scaled by 3: inputs need not be unit norm.
P = 3 * torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.8, 0.6]]])
N = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
NOT_CUT = torch.zeros(2, 2, dtype=torch.bool)


def test_reference_formula_by_hand():
    # R00 = (1 - 0 + 0.2*0.6 - 0.2*0.8) / 0.1 = 9.6; R01 = (0.6 - 0 + 0.12 - 0.16) / 0.1 = 5.6; example 1 mirrors it
    terms = supervised_reward(Q, P, N, NOT_CUT)
    assert torch.allclose(terms.reward, torch.tensor([[9.6, 5.6], [9.6, 5.6]]), atol=1e-5)
    assert torch.allclose(terms.hard_negative, torch.full((2, 2), -0.8), atol=1e-6)
    assert torch.allclose(terms.consistency, torch.full((2, 2), 0.6), atol=1e-6)


def test_rollout_variant_by_hand():
    # R00 = (1 - 0 + 0.12 - 0) / 0.1 = 11.2; R01 = (0.6 - 0.8 + 0.12 - 0.2*0.8) / 0.1 = -2.4
    terms = supervised_reward(Q, P, N, NOT_CUT, variant="rollout")
    assert torch.allclose(terms.reward, torch.tensor([[11.2, -2.4], [11.2, -2.4]]), atol=1e-5)


def test_unsupervised_by_hand():
    # R00 = (1 + 0.12 - 0.2*0) / 0.1 = 11.2; R01 = (0.6 + 0.12 - 0.2*0.8) / 0.1 = 5.6
    terms = unsupervised_reward(Q, P, NOT_CUT)
    assert torch.allclose(terms.reward, torch.tensor([[11.2, 5.6], [11.2, 5.6]]), atol=1e-5)


def test_truncated_rollouts_get_the_penalty_instead():
    cut = torch.tensor([[False, False], [False, True]])
    weights = RewardWeights(truncation_penalty=-1.0)
    for terms in (supervised_reward(Q, P, N, cut, weights), unsupervised_reward(Q, P, cut, weights)):
        assert terms.reward[1, 1].item() == -1.0 and terms.reward[0, 0].item() > 0


def test_reference_contrastive_terms_cancel_in_group_advantages_but_the_variant_does_not():
    """The reason for the rollout variant: in the reference, negative and hard-negative terms are per-example."""
    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 3, 8), torch.randn(4, 8)
    cut = torch.zeros(4, 3, dtype=torch.bool)

    def advantages(variant, hard_negative_weight):
        weights = RewardWeights(hard_negative=hard_negative_weight)
        reward = supervised_reward(q, p, n, cut, weights, variant).reward
        return reward - reward.mean(dim=1, keepdim=True)

    assert torch.allclose(advantages("reference", 0.0), advantages("reference", 5.0), atol=1e-4)
    assert not torch.allclose(advantages("rollout", 0.0), advantages("rollout", 5.0), atol=1e-2)


def test_single_rollout_and_single_example_terms_are_zero():
    one = supervised_reward(Q[:1], P[:1, :1], N[:1], NOT_CUT[:1, :1])
    assert one.consistency.item() == 0 and one.hard_negative.item() == 0
    assert one.reward.item() == pytest.approx((1.0 - 0.0) / 0.1)


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="'best'"):
        supervised_reward(Q, P, N, NOT_CUT, variant="best")
