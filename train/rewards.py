"""GRACE's contrastive rewards as pure functions of embedding tensors.

Everything here is a function of L2-normalised embeddings (cosine = dot product) and a truncation mask, so each term
can be checked against hand-computed values and none of it knows about TRL, models or tokenizers. Shapes: ``B``
examples in the step (all processes together), ``K`` rollouts per example, ``H`` hidden size.

Supervised (query ``q``, positive document ``d+`` with ``K`` rollouts ``p``, negative ``d-`` with anchor ``n``):

- ``reference`` (the formula of the GRACE reference code, exactly)::

      R_ik = [cos(q_i, p_ik) - cos(q_i, n_i) + l1 * mean_{j!=k} cos(p_ik, p_ij)
              - l2 * mean_{i'!=i} max_l cos(q_i, p_i'l)] / tau

  The negative and hard-negative terms depend on the example only, not on the rollout, so group-mean advantages
  cancel them; only the positive and consistency terms move the policy.
- ``rollout`` (this project's variant): the two contrastive terms use the rollout's own embedding, so they do reach
  the advantage::

      R_ik = [cos(q_i, p_ik) - cos(p_ik, n_i) + l1 * mean_{j!=k} cos(p_ik, p_ij)
              - l2 * max_{i'!=i} cos(p_ik, q_i')] / tau

Unsupervised (text with anchor ``a``, a second generation of the same text, and rollouts ``r``), as the reference
code computes it::

      R_ik = [cos(a_i, r_ik) + l1 * mean_{j!=k} cos(r_ik, r_ij) - l2 * mean_{i'!=i} cos(r_ik, a_i')] / tau

In every case a rollout cut at the length limit without an end token gets ``truncation_penalty`` instead (it
replaces the reward; it is not added), unless the penalty is ``None``. A term that needs two rollouts (``K = 1``)
or two examples (``B = 1``) is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import GraceUserError


REWARD_VARIANTS = ("reference", "rollout")


@dataclass(frozen=True)
class RewardWeights:
    """The constants of the reward; defaults are the reference code's."""

    consistency: float = 0.2  # lambda_1
    hard_negative: float = 0.2  # lambda_2
    temperature: float = 0.1  # tau: every term is divided by it
    truncation_penalty: float | None = -1.0  # None: a cut rationale is scored like any other


@dataclass
class RewardTerms:
    """The reward and its parts, each ``(B, K)``, before division by tau (for logging what drives training)."""

    reward: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    consistency: torch.Tensor
    hard_negative: torch.Tensor


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), p=2, dim=-1)


def consistency(rollouts: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` mean cosine of each rollout with the other rollouts of its example."""
    batch, k, _ = rollouts.shape
    if k < 2:
        return rollouts.new_zeros((batch, k))
    unit = _unit(rollouts)
    sims = unit @ unit.transpose(1, 2)  # (B, K, K)
    return (sims.sum(dim=2) - sims.diagonal(dim1=1, dim2=2)) / (k - 1)


def _others_mask(batch: int, device: torch.device) -> torch.Tensor:
    return ~torch.eye(batch, dtype=torch.bool, device=device)


def _finish(terms: RewardTerms, truncated: torch.Tensor, weights: RewardWeights) -> RewardTerms:
    total = (
        terms.positive
        + terms.negative
        + weights.consistency * terms.consistency
        + weights.hard_negative * terms.hard_negative
    ) / weights.temperature
    if weights.truncation_penalty is None:
        terms.reward = total
    else:
        terms.reward = torch.where(truncated.bool(), torch.full_like(total, weights.truncation_penalty), total)
    return terms


def supervised_reward(
    query: torch.Tensor,
    rollouts: torch.Tensor,
    negative: torch.Tensor,
    truncated: torch.Tensor,
    weights: RewardWeights = RewardWeights(),
    variant: str = "reference",
) -> RewardTerms:
    """Rewards ``(B, K)`` for the positive document's rollouts.

    Args:
        query: ``(B, H)`` embeddings of each example's query anchor rationale.
        rollouts: ``(B, K, H)`` embeddings of the positive document with each of its K rationales.
        negative: ``(B, H)`` embeddings of each example's negative document anchor rationale.
        truncated: ``(B, K)`` True where a rollout hit the length limit without an end token.
        weights: the reward constants.
        variant: ``"reference"`` or ``"rollout"`` (see the module docstring).
    """
    if variant not in REWARD_VARIANTS:
        raise GraceUserError(f"Unknown reward variant {variant!r}; use one of {REWARD_VARIANTS}.")
    q, p, n = _unit(query), _unit(rollouts), _unit(negative)
    batch, k, _ = p.shape
    positive = torch.einsum("bh,bkh->bk", q, p)
    others = _others_mask(batch, p.device)
    if variant == "reference":
        negative_term = -(q * n).sum(-1, keepdim=True).expand(batch, k)
        # hardest rollout of every other example against this query, averaged over the other examples
        q_vs_rollouts = torch.einsum("ih,jlh->ijl", q, p).amax(dim=2)  # (B, B)
        if batch > 1:
            cross = (q_vs_rollouts * others).sum(dim=1) / (batch - 1)
        else:
            cross = q.new_zeros(batch)
        hard_negative = -cross.unsqueeze(1).expand(batch, k)
    else:
        negative_term = -torch.einsum("bkh,bh->bk", p, n)
        rollout_vs_queries = torch.einsum("ikh,jh->ikj", p, q)  # (B, K, B)
        if batch > 1:
            masked = rollout_vs_queries.masked_fill(~others.unsqueeze(1), float("-inf"))
            hard_negative = -masked.amax(dim=2)
        else:
            hard_negative = p.new_zeros((batch, k))
    terms = RewardTerms(positive, positive, negative_term, consistency(p), hard_negative)
    return _finish(terms, truncated, weights)


def unsupervised_reward(
    anchor: torch.Tensor,
    rollouts: torch.Tensor,
    truncated: torch.Tensor,
    weights: RewardWeights = RewardWeights(),
) -> RewardTerms:
    """Rewards ``(B, K)`` for K rationales of each text against a second generation (the anchor) of the same text.

    Args:
        anchor: ``(B, H)`` embeddings of each text with its anchor rationale.
        rollouts: ``(B, K, H)`` embeddings of each text with each of its K rationales.
        truncated: ``(B, K)`` True where a rollout hit the length limit without an end token.
        weights: the reward constants.
    """
    a, r = _unit(anchor), _unit(rollouts)
    batch, k, _ = r.shape
    positive = torch.einsum("bh,bkh->bk", a, r)
    if batch > 1:
        rollout_vs_anchors = torch.einsum("ikh,jh->ikj", r, a)  # (B, K, B)
        others = _others_mask(batch, r.device).unsqueeze(1)
        hard_negative = -(rollout_vs_anchors * others).sum(dim=2) / (batch - 1)
    else:
        hard_negative = r.new_zeros((batch, k))
    terms = RewardTerms(positive, positive, torch.zeros_like(positive), consistency(r), hard_negative)
    return _finish(terms, truncated, weights)
