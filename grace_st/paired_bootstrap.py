"""Paired bootstrap of a difference in mean per-query score: the interval behind every "trained beats base" claim.

Two models scored on the *same* queries give paired scores; resampling queries (with replacement) and recomputing
the mean difference each time gives its sampling distribution, and the 2.5th/97.5th percentiles a 95% interval.
Pairing matters: query difficulty varies far more than the difference between two models, and resampling the pairs
together cancels it. The seed is fixed, so a report is reproducible to the digit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import GraceUserError


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """``(mean(a - b), ci_low, ci_high)``: percentile bootstrap interval of the mean paired difference.

    Args:
        a / b: per-query scores of the two models, in the same query order (e.g. trained, base).
        n_resamples: bootstrap resamples (at least 1000 for a 95% interval's tails to be stable).
        seed: the resampling seed.
        confidence: the interval's coverage.
    """
    first, second = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if first.shape != second.shape or first.ndim != 1 or first.size == 0:
        raise GraceUserError(
            f"paired_bootstrap needs two equally long, non-empty 1-D score lists; got shapes {first.shape} and "
            f"{second.shape}. Score both models on the same queries."
        )
    if not isinstance(n_resamples, int) or n_resamples < 1:
        raise GraceUserError(f"n_resamples must be a positive integer, got {n_resamples!r}.")
    if not 0 < confidence < 1:
        raise GraceUserError(f"confidence must be between 0 and 1, got {confidence!r}.")
    diff = first - second
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // diff.size)  # bounded memory for long query lists
    for start in range(0, n_resamples, chunk):
        count = min(chunk, n_resamples - start)
        means[start : start + count] = diff[rng.integers(0, diff.size, size=(count, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diff.mean()), float(low), float(high)


def paired_scores(model: Mapping[str, float], baseline: Mapping[str, float]) -> tuple[list[float], list[float]]:
    """The two models' per-query scores as aligned lists (sorted by query id); both must cover the same queries."""
    if set(model) != set(baseline):
        only = sorted(set(model) ^ set(baseline))[:5]
        raise GraceUserError(
            f"The two runs scored different queries (e.g. {only}); evaluate both on the same task, split and "
            "max_queries."
        )
    ids = sorted(model)
    return [model[i] for i in ids], [baseline[i] for i in ids]
