"""Uncertainty over seeds and paired comparisons between heads."""
import math

import numpy as np
from scipy import stats


def mean_ci(values, level: float = 0.95):
    """(mean, half-width of the Student-t confidence interval); the half-width is NaN for fewer than 2 values."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) < 2:
        return float(values.mean()), float("nan")
    sem = values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * sem)


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000, seed: int = 0):
    """Accuracy difference a - b over the same test images, resampling images with replacement.

    correct_*: [N] per-image accuracy (averaged over seeds). Returns (difference, ci_low, ci_high, two-sided p),
    where p is twice the share of resampled differences on the far side of zero, floored at 1/resamples (the
    smallest p this many resamples can resolve)."""
    diff = np.asarray(correct_a, dtype=float) - np.asarray(correct_b, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)])
    observed = float(diff.mean())
    low, high = np.quantile(means, [0.025, 0.975])
    tail = (means <= 0).mean() if observed > 0 else (means >= 0).mean()
    return observed, float(low), float(high), float(min(1.0, max(2 * tail, 1 / resamples)))


def paired_t_pvalue(a_per_seed, b_per_seed) -> float:
    """Two-sided paired t-test over seeds (seed s of one head against seed s of the other); NaN below 2 pairs."""
    a, b = np.asarray(a_per_seed, dtype=float), np.asarray(b_per_seed, dtype=float)
    if len(a) < 2 or len(a) != len(b) or np.allclose(a - b, (a - b)[0]):
        return float("nan")
    return float(stats.ttest_rel(a, b).pvalue)
