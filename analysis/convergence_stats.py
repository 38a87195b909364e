"""Is a head's verdict about the head, or about the epoch budget? The statistics of the convergence check and of
accuracy against training time. Pure functions of validation accuracies, curves and timing rounds
(analysis/convergence.py trains the 2x runs, whose curves these are; the timing protocol measures the rounds).

Convergence check. Each head's chosen configuration is trained on the tuning split at the study's epochs (1x) and
at twice them (2x), in pairs (the same configuration and seed at both budgets): with several searches per head,
the first two searches' configurations with the first of their seeds; with one, its first two seeds
(analysis/run.py: convergence_sources). Its *gain* is the mean over its pairs of the 2x run's final validation
accuracy minus the 1x run's. Its *noise* is how far one run's accuracy moves when the head is searched and seeded
again: the sample SD of the head's final models' test accuracies over all its searches and seeds (their spread is
measured anyway; a final model trains at 1x on the tuning split and is scored once on validation, so it is also
its pair's 1x run, analysis/convergence.py). A head is *budget-limited* when its gain is both larger than its
noise (doubling the budget moves it by more than re-searching and reseeding do) and larger than zero beyond the
gain's own sampling error: a one-sided t-test of the pairs' differences, whose SD is pooled over the heads (each
head's two pairs give it one degree of freedom), Holm-corrected across the heads at ALPHA. Without the test a
head's gain was read as exact: in the 40-epoch default, two pairs measured gains of +0.12 to +0.70 points whose
standard error is about 0.26, and four heads were flagged against noises of 0.05 to 0.68. With one final model
the noise is unknown, and without a degree of freedom for the pairs' SD the test is; then nothing is flagged.

Time to accuracy. A head's curve is its 2x runs' mean validation accuracy after each epoch, against cumulative
training seconds: epochs x the head's epoch time measured alone (the timing protocol's rounds). Its time to a
target is the end of the first epoch at which the mean curve reaches the target; the targets are 90 % and 99 % of
softmax's validation accuracy at 2x the epochs (its 2x runs' mean; converged only if softmax is not
budget-limited). The 95 % interval is a percentile bootstrap that resamples seeds (the head's and softmax's, so the
target varies too) and timing rounds together; a resample that never reaches the target counts as infinitely
slow, so an interval may be open above.
"""
import math
from typing import Optional

import numpy as np
from scipy import stats

from analysis.stats import ALPHA, holm

BOOTSTRAP = 2000  # resamples for the time-to-accuracy intervals
CONFIDENCE = 0.95
TARGETS = {"time_to_90_s": 0.90, "time_to_99_s": 0.99}  # fractions of the baseline's converged accuracy


def convergence_verdicts(pairs: dict, noise: dict) -> dict:
    """The check's verdict on every head at once (they share the pairs' pooled SD and the Holm correction).

    pairs: {head: [(accuracy at 1x, accuracy at 2x), ...]}, each pair one configuration and seed at both budgets
    (fractions); pass only the heads to judge (the near-chance ones are not). noise: {head: one run's SD}, measured
    elsewhere (the check: the final models', run_noise; the budget measurement: its own runs'); NaN or missing:
    unknown. Returns {head: {convergence_gain, convergence_gain_se, convergence_p, convergence_p_holm,
    convergence_noise, budget_limited}}; budget_limited is None when the noise or the test is unknown."""
    diffs = {head: np.asarray([long - short for short, long in runs], float) for head, runs in pairs.items()}
    squares = sum(float(((d - d.mean()) ** 2).sum()) for d in diffs.values() if len(d) >= 2)
    freedom = sum(len(d) - 1 for d in diffs.values() if len(d) >= 2)
    spread = math.sqrt(squares / freedom) if freedom else float("nan")  # SD of one pair's difference
    heads = list(diffs)
    found = {}
    for head in heads:
        d = diffs[head]
        gain = float(d.mean()) if len(d) else float("nan")
        se = spread / math.sqrt(len(d)) if len(d) else float("nan")
        found[head] = {"convergence_gain": gain, "convergence_gain_se": se,
                       "convergence_p": one_sided_p(gain, se, freedom)}
    adjusted = holm([found[h]["convergence_p"] for h in heads])
    for head, p_holm in zip(heads, adjusted):
        row = found[head]
        row["convergence_p_holm"] = float(p_holm)
        row["convergence_noise"] = float(noise.get(head, float("nan")))
        known = math.isfinite(row["convergence_noise"]) and math.isfinite(p_holm) and math.isfinite(row[
            "convergence_gain"])
        row["budget_limited"] = (bool(row["convergence_gain"] > row["convergence_noise"] and p_holm <= ALPHA)
                                 if known else None)
    return found


def one_sided_p(gain: float, se: float, freedom: int) -> float:
    """P(a gain this large or larger | no gain): Student's t with `freedom` degrees of freedom. NaN when unknown;
    with no spread at all (se 0), 0 for a positive gain and 1 otherwise."""
    if not (math.isfinite(gain) and math.isfinite(se) and freedom):
        return float("nan")
    if se == 0:
        return 0.0 if gain > 0 else 1.0
    return float(stats.t.sf(gain / se, freedom))


def run_noise(accuracies) -> float:
    """One run's standard deviation (sample SD) over runs that differ only in what re-searching and reseeding
    change: a head's final models, over its searches and seeds. NaN with fewer than two."""
    values = np.asarray([a for a in accuracies if math.isfinite(a)], float)
    return float(values.std(ddof=1)) if len(values) >= 2 else float("nan")


def first_reaching(curve: np.ndarray, target: float) -> Optional[int]:
    """The 1-based epoch at whose end `curve` (accuracy after each epoch) first reaches `target`; None if never."""
    reached = np.flatnonzero(np.asarray(curve) >= target)
    return int(reached[0]) + 1 if len(reached) else None


def time_to(curves: np.ndarray, epoch_seconds: float, target: float) -> float:
    """Seconds of training until the mean of `curves` [seeds, epochs] reaches `target`; inf if it never does."""
    epoch = first_reaching(np.asarray(curves, float).mean(axis=0), target)
    return math.inf if epoch is None else epoch * epoch_seconds


def time_to_accuracy(curves, round_epoch_s, baseline_final, fraction: float, rng=None,
                     resamples: int = BOOTSTRAP) -> dict:
    """{estimate, ci_low, ci_high} in seconds for one head to reach `fraction` of the baseline's converged
    accuracy. curves: [seeds, epochs] validation accuracy after each epoch; round_epoch_s: the head's epoch time
    in each timing round (seconds); baseline_final: each baseline seed's converged accuracy. inf: not reached."""
    rng = rng if rng is not None else np.random.default_rng(0)
    curves, rounds = np.asarray(curves, float), np.asarray(round_epoch_s, float)
    baseline = np.asarray(baseline_final, float)
    estimate = time_to(curves, float(np.median(rounds)), fraction * baseline.mean())
    draws = bootstrap_times(curves, rounds, baseline, fraction, rng, resamples)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(draws, [tail, 1 - tail], method="inverted_cdf")  # inf stays inf
    return {"estimate": estimate, "ci_low": float(low), "ci_high": float(high)}


def bootstrap_times(curves: np.ndarray, rounds: np.ndarray, baseline: np.ndarray, fraction: float, rng,
                    resamples: int) -> np.ndarray:
    """[resamples] times to the target, each from a resample of the head's seeds, of the timing rounds and of the
    baseline's seeds (drawn in that order, each for all resamples at once): `time_to` on every resample, vectorised
    (an analysis of nine heads spent 4 s in a loop of it)."""
    seeds = rng.integers(len(curves), size=(resamples, len(curves)))
    epoch_s = np.median(rounds[rng.integers(len(rounds), size=(resamples, len(rounds)))], axis=1)
    targets = fraction * baseline[rng.integers(len(baseline), size=(resamples, len(baseline)))].mean(axis=1)
    reached = curves[seeds].mean(axis=1) >= targets[:, None]  # [resamples, epochs]: mean curve at the target
    first_epoch = reached.argmax(axis=1) + 1
    return np.where(reached.any(axis=1), first_epoch * epoch_s, np.inf)
