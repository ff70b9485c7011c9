"""Bootstrap confidence intervals for rates and for the mean of several evals' rates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rhlab.evals.records import Rate


def bootstrap_rate(values: Sequence[bool], *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> Rate:
    """Proportion of True with a percentile bootstrap interval; empty input gives an empty Rate."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Rate(estimate=None, low=None, high=None, n=0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return Rate(
        estimate=float(x.mean()),
        low=float(np.quantile(means, alpha)),
        high=float(np.quantile(means, 1 - alpha)),
        n=int(x.size),
    )


def bootstrap_mean_of_rates(
    per_eval: Mapping[str, Sequence[bool]], *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Rate:
    """Plain mean of per-eval rates (each eval weighted equally, as in the paper's score).

    Each eval is resampled independently within each bootstrap replicate, so the interval reflects
    every eval's own sample size.
    """
    arrays = [np.asarray(v, dtype=float) for v in per_eval.values()]
    if not arrays or any(a.size == 0 for a in arrays):
        return Rate(estimate=None, low=None, high=None, n=sum(a.size for a in arrays))
    rng = np.random.default_rng(seed)
    replicate_means = np.zeros(n_boot)
    for a in arrays:
        replicate_means += a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    replicate_means /= len(arrays)
    alpha = (1 - confidence) / 2
    return Rate(
        estimate=float(np.mean([a.mean() for a in arrays])),
        low=float(np.quantile(replicate_means, alpha)),
        high=float(np.quantile(replicate_means, 1 - alpha)),
        n=int(sum(a.size for a in arrays)),
    )
