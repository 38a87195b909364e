"""Costs as measurements: medians over timing rounds with distribution-free intervals, and cost verdicts from them.

The timing protocol (analysis/timing_protocol.py) gives, per round, each head's epoch time, head time and
images/s, all heads timed in the same round one after another. Per head, each figure is summarised as the median
over rounds with a 95 % interval for that median from order statistics (no assumption about how times are
distributed: a machine's drift and hiccups are neither normal nor symmetric). A head's ratio to another is taken
within each round (the two were timed minutes apart at most, under the same drift), then summarised the same way.

Cost verdicts (cheaper / dearer / not distinguishable) come from the ratio's interval at a family-wise level:
with m heads compared with the baseline, each interval is at 1 - alpha/m (Bonferroni), so the chance of any false
"cheaper" or "dearer" among them is at most alpha. The protocol runs enough rounds for that interval to exist
(rounds_needed), with one round to spare on each side.
"""
import math

import numpy as np
from scipy import stats

COST_FIGURES = ("epoch_time_s", "head_time_s", "images_per_s")
RATIO_COLUMNS = {"epoch_time_s": "epoch_time_ratio", "head_time_s": "head_time_ratio"}  # figure -> its ratio
CONFIDENCE = 0.95
COST_VERDICTS = {"cheaper": "cheaper", "dearer": "dearer", "same": "not distinguishable",
                 "unresolved": "not distinguishable (too few rounds for an interval)"}


def interval_rank(n: int, confidence: float) -> int:
    """The largest k such that [x_(k), x_(n-k+1)] (1-based order statistics of n values) covers the median with
    probability >= confidence: coverage is 1 - 2 P(Binomial(n, 1/2) <= k - 1). 0 when even [min, max] falls short."""
    best = 0
    for k in range(1, n // 2 + 1):
        if 1 - 2 * stats.binom.cdf(k - 1, n, 0.5) >= confidence:
            best = k
        else:
            break
    return best


def median_interval(values, confidence: float = CONFIDENCE):
    """(median, low, high) of finite values; low/high NaN when there are too few values for that confidence."""
    x = np.sort(np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float))
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    k = interval_rank(len(x), confidence)
    median = float(np.median(x))
    if k == 0:
        return median, float("nan"), float("nan")
    return median, float(x[k - 1]), float(x[len(x) - k])


def rounds_needed(comparisons: int, alpha: float = 1 - CONFIDENCE, spare: int = 0) -> int:
    """The fewest rounds for which a (1 - alpha/comparisons) interval of per-round values exists and leaves out
    `spare` extreme rounds on each side: spare = 0 allows [min, max]; spare = 1 keeps one disturbed round (a
    burst of other work on the machine) from deciding an interval, and so a verdict."""
    n = 1
    while interval_rank(n, 1 - alpha / max(comparisons, 1)) < 1 + spare:
        n += 1
    return n


def verdict(low: float, high: float) -> str:
    """Cost verdict of a ratio (this head's time / the other's) from its interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return COST_VERDICTS["unresolved"]
    if high < 1:
        return COST_VERDICTS["cheaper"]
    if low > 1:
        return COST_VERDICTS["dearer"]
    return COST_VERDICTS["same"]


def per_round(record: dict, head: str, figure: str) -> dict:
    """{round: value} of one head's figure."""
    return {r["round"]: r[figure] for r in record["rounds"] if r["head"] == head}


def ratios(record: dict, head: str, other: str, figure: str) -> list:
    """head's figure / other's, round by round (only rounds that timed both)."""
    mine, theirs = per_round(record, head, figure), per_round(record, other, figure)
    return [mine[r] / theirs[r] for r in sorted(mine) if r in theirs and theirs[r] > 0]


def summarise(record: dict, baseline: str, alpha: float = 1 - CONFIDENCE) -> dict:
    """{head: cost columns}: each figure's median and 95 % interval over rounds; each ratio to the baseline with its
    family-wise interval (1 - alpha/m over the m other heads) and the verdict that interval gives."""
    heads = list(record["configs"])
    others = [h for h in heads if h != baseline]
    family = 1 - alpha / max(len(others), 1)
    rows = {}
    for head in heads:
        row = {}
        for figure in COST_FIGURES:
            column = f"median_{figure}"
            row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"] = median_interval(
                per_round(record, head, figure).values())
        for figure, column in RATIO_COLUMNS.items():
            if head == baseline or baseline not in heads:
                row[column] = 1.0 if head == baseline else float("nan")
                row[f"{column}_ci_low"] = row[f"{column}_ci_high"] = row[column]
                row[f"{column}_verdict"] = "baseline" if head == baseline else ""
                continue
            row[column], low, high = median_interval(ratios(record, head, baseline, figure), family)
            row[f"{column}_ci_low"], row[f"{column}_ci_high"] = low, high
            row[f"{column}_verdict"] = verdict(low, high)
        row["timing_rounds"] = len(per_round(record, head, "epoch_time_s"))
        rows[head] = row
    return rows


def pairwise_dearer(record: dict, heads, figure: str = "epoch_time_s", alpha: float = 1 - CONFIDENCE) -> dict:
    """{(a, b): True when a is dearer than b}: a's per-round ratio to b has an interval above 1, at 1 - alpha/pairs
    (Bonferroni over every unordered pair among `heads`)."""
    heads = list(heads)
    pairs = len(heads) * (len(heads) - 1) // 2
    confidence = 1 - alpha / max(pairs, 1)
    dearer = {}
    for a in heads:
        for b in heads:
            if a != b:
                _, low, _ = median_interval(ratios(record, a, b, figure), confidence)
                dearer[(a, b)] = math.isfinite(low) and low > 1
    return dearer
