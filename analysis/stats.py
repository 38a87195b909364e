"""Uncertainty over seeds and test images, and the test that decides whether two heads differ.

The verdict on "head A against softmax" must survive two sources of noise: which seeds trained the models
(seed-to-seed variance) and which images happen to be in the test split (image-to-image variance). One test covers
both, and a Holm correction covers comparing several heads with the same baseline at once.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05  # family-wise error rate of all comparisons with the baseline together


def mean_ci(values, level: float = 0.95):
    """(mean, half-width of the Student-t confidence interval) of the finite values; the half-width is NaN for
    fewer than 2 of them."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) < 2:
        return float(values.mean()), float("nan")
    sem = values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * sem)


def paired_t_pvalue(a_per_seed, b_per_seed) -> float:
    """Two-sided paired t-test over seeds (seed s of one head against seed s of the other); NaN below 2 pairs.

    A constant difference has zero spread: t is infinite unless the difference is 0, so p is 0 (a constant
    non-zero difference) or 1 (no difference at all), where scipy would return NaN."""
    a, b = np.asarray(a_per_seed, dtype=float), np.asarray(b_per_seed, dtype=float)
    if len(a) < 2 or len(a) != len(b):
        return float("nan")
    diff = a - b
    if np.all(diff == diff[0]):
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


@dataclass(frozen=True)
class Difference:
    """Mean accuracy difference a - b with its uncertainty from seeds and test images together."""
    diff: float  # mean over seeds and images of a's accuracy minus b's
    ci_low: float  # 95 % confidence interval of diff (Student t with df degrees of freedom)
    ci_high: float
    p: float  # two-sided p-value of diff = 0; NaN when seed variance cannot be estimated (< 2 seeds)
    se_seeds: float  # standard error from seed-to-seed variance (per-model image noise included)
    se_images: float  # standard error from image-to-image variance beyond that
    df: float  # Satterthwaite degrees of freedom of the combined standard error
    paired_seeds: bool  # whether seed s of a was paired with seed s of b


def two_way_mean_squares(matrix: np.ndarray):
    """(MS_seed, MS_residual) of a [S, N] seeds x images table, as in a two-way ANOVA without replication."""
    seeds, images = matrix.shape
    seed_means, image_means = matrix.mean(1, keepdims=True), matrix.mean(0, keepdims=True)
    residual = matrix - seed_means - image_means + matrix.mean()
    ms_seed = images * seed_means.var(ddof=1)
    ms_residual = (residual ** 2).sum() / ((seeds - 1) * (images - 1))
    return float(ms_seed), float(ms_residual)


def seed_image_test(correct_a: np.ndarray, correct_b: np.ndarray, seeds_a=None, seeds_b=None,
                    level: float = 0.95) -> Difference:
    """Compare two heads evaluated on the same test images, with seeds and images both random (crossed design).

    correct_*: [S, N] 0/1, row s = one seed's model, column i = test image i (the same images for both heads).

    Var(mean difference) = sigma2_seed / S + sigma2_image / N + sigma2_residual / (S N). Estimated as:
    - seed term: the variance of the per-seed accuracy differences / S when both heads have the same seeds (paired:
      seed s fixes data order, augmentation and backbone initialisation for both), else var(a)/S_a + var(b)/S_b.
      It is the paired t-test's over seeds and already holds the residual (seed x image) noise, so
    - image term: the variance over images of the seed-averaged per-image difference, / N, less that residual part
      (MS_residual / (N S) from the two-way seeds x images table), floored at 0.
    So the standard error is never smaller than a t-test over seed-level accuracies alone. Degrees of freedom:
    Satterthwaite over the mean squares (seed term S - 1, image term N - 1, residual (S-1)(N-1)).
    """
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected [seeds, images] arrays over the same images, got {a.shape} and {b.shape}")
    diff = float(a.mean() - b.mean())
    per_image = a.mean(0) - b.mean(0)
    n_images = per_image.size
    paired = seeds_a is not None and list(seeds_a) == list(seeds_b)
    tables = [a - b] if paired else [a, b]
    nan = float("nan")
    if n_images < 2 or any(t.shape[0] < 2 for t in tables):  # one seed: its variance is unknown
        return Difference(diff, nan, nan, nan, nan, nan, nan, paired)
    seed_terms, residual_terms = [], []  # (term of the variance, its degrees of freedom)
    for table in tables:
        seeds = table.shape[0]
        ms_seed, ms_residual = two_way_mean_squares(table)
        seed_terms.append((ms_seed / (n_images * seeds), seeds - 1))
        residual_terms.append((ms_residual / (n_images * seeds), (seeds - 1) * (n_images - 1)))
    image_raw = per_image.var(ddof=1) / n_images
    var_seeds = sum(v for v, _ in seed_terms)
    var_images = max(image_raw - sum(v for v, _ in residual_terms), 0.0)
    components = seed_terms + ([(image_raw, n_images - 1)] + residual_terms if var_images > 0 else [])
    total = var_seeds + var_images
    if total == 0:  # identical everywhere: no noise at all
        p = 1.0 if diff == 0 else 0.0
        return Difference(diff, diff, diff, p, 0.0, 0.0, float("inf"), paired)
    df = total ** 2 / sum(v ** 2 / k for v, k in components if v > 0)
    se = math.sqrt(total)
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return Difference(diff, diff - half, diff + half, p, math.sqrt(var_seeds), math.sqrt(var_images), float(df),
                      paired)


def search_rows(correct: np.ndarray, searches) -> tuple:
    """(rows, search ids): the [M, N] 0/1 table of a head's M final models, one row per model, averaged over the
    models of each search into one row per search ([R, N], sorted by search id).

    A head's models come from R independent searches, each retrained with a few seeds. The search is the unit the
    test draws: a search's row holds its configuration's effect and the mean of its seeds' noise, so the variance
    between rows, over R, is the variance of the head's mean over searches and seeds together (a balanced nested
    design; with unequal seeds per search, approximately). seed_image_test takes these rows in place of seeds."""
    correct, searches = np.asarray(correct, dtype=float), np.asarray(searches)
    if correct.ndim != 2 or len(searches) != correct.shape[0]:
        raise ValueError(f"expected one search id per model row, got {len(searches)} for {correct.shape}")
    ids = sorted(set(searches.tolist()))
    return np.stack([correct[searches == r].mean(0) for r in ids]), ids


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (same order as given; NaN stays NaN and is not counted as a test).

    Reject hypothesis i at family-wise level alpha iff its adjusted p <= alpha."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def informative(mean_accuracy: float, num_classes: int, multiple: float) -> bool:
    """A model set is worth comparing only when it clearly learned: mean accuracy >= multiple x chance."""
    return math.isfinite(mean_accuracy) and mean_accuracy >= multiple / num_classes
