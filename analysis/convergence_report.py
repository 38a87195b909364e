"""The report's section on the convergence check and on accuracy against training time."""
import math

import pandas as pd

from analysis.convergence_stats import TARGETS
from analysis.stats import ALPHA

BASELINE = "softmax"
BUDGET_LIMITED = "budget-limited: more training may narrow it"
INCONCLUSIVE = "inconclusive: gain above noise, within its error"

PROCEDURE = (
    "Each head's chosen configuration was trained on the tuning split (validation scores only; the test split is "
    "the final models', touched once) at the study's epochs (1x) and at twice them (2x), in two pairs (the same "
    "configuration and seed at both budgets: with several searches per head, the first two searches' "
    "configurations with the first of their seeds; with one, its first two seeds). A 1x run is the final model "
    "itself, scored once on the validation split (final models saved by older code: a run of its own). *Gain*: "
    "the mean over the pairs "
    "of the 2x run's final validation accuracy minus the 1x run's, ± its standard error (the pairs' differences' SD, "
    "pooled over the heads, over the square root of the head's pairs). *Noise*: how far one run's accuracy moves "
    "when the head is searched and seeded again: the standard deviation of the head's final models' test accuracies "
    "over all its searches and seeds. A head is "
    "*budget-limited* when its gain is larger than its noise (doubling its training moves it by more than "
    "re-searching and reseeding do) and larger than zero beyond its own error (one-sided t-test on the pooled SD, "
    f"Holm-corrected across the heads, family-wise {ALPHA:g}): its verdict above may narrow with more training.")

TIME_PROCEDURE = (
    f"Time to accuracy: the 2x runs' mean validation accuracy after each epoch, against cumulative training seconds "
    f"(epochs x the head's epoch time measured alone by the timing protocol, scaled from the final models' training "
    f"set to the tuning split's rows); the time to a target is the end of the first epoch that reaches it. Targets: "
    f"90 % and 99 % of {BASELINE}'s validation accuracy at twice the epochs (its 2x runs' mean: its converged "
    f"accuracy only where {BASELINE} is not budget-limited). 95 % intervals: percentile "
    f"bootstrap over seeds (the head's and {BASELINE}'s) and timing rounds; 'not reached' means not within 2x the "
    f"epochs, and an interval ending in 'not reached' is open above.")

READINGS = (
    "Two readings, two different claims. *The best each head reaches* is the quality table and the convergence "
    "check: accuracy once training has (or has not) converged. *The best each head reaches within a time budget* "
    "is this table and `accuracy_vs_time.png`: how many seconds of training each head needs to get within 10 % or "
    f"1 % of {BASELINE}'s converged accuracy.")


def points(value: float) -> str:
    return f"{100 * value:+.2f}" if math.isfinite(value) else "n/a"


def seconds(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return "not reached" if math.isinf(value) else f"{value:.3g}"


def time_interval(row, column: str) -> str:
    estimate = seconds(row[column])
    if estimate in ("n/a", "not reached") and not math.isfinite(row[f"{column}_ci_low"]):
        return estimate
    return f"{estimate} [{seconds(row[f'{column}_ci_low'])}, {seconds(row[f'{column}_ci_high'])}]"


def verdict(row) -> str:
    if not row.get("informative", True):
        return "uninformative (near chance)"
    if row["budget_limited"] is None or pd.isna(row["budget_limited"]):
        if not math.isfinite(row["convergence_noise"]):
            return "unknown (one final model: no noise estimate)"
        return "unknown (one pair: the gain's error is unknown)"
    if row["budget_limited"]:
        return BUDGET_LIMITED
    return INCONCLUSIVE if inconclusive(row) else "converged within noise"


def inconclusive(row) -> bool:
    """Not flagged, yet its gain exceeds its noise: the gain did not survive its own error (or Holm's correction)."""
    flagged = row.get("budget_limited")
    if flagged is None or pd.isna(flagged) or bool(flagged) or not row.get("informative", True):
        return False
    return bool(row["convergence_gain"] > row["convergence_noise"])


def gain_text(row) -> str:
    gain, se = row["convergence_gain"], row.get("convergence_gain_se", float("nan"))
    return f"{points(gain)} ± {100 * se:.2f}" if math.isfinite(gain) and math.isfinite(se) else points(gain)


def p_text(value) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return "< 0.0001" if value < 1e-4 else f"{value:.2g}"


def check_table(summary: pd.DataFrame) -> pd.DataFrame:
    rows = [row for _, row in summary.iterrows()]
    return pd.DataFrame({
        "head": summary["head"],
        "val acc 1x %": [f"{100 * r['val_acc_1x']:.2f}" for r in rows],
        "val acc 2x %": [f"{100 * r['val_acc_2x']:.2f}" for r in rows],
        "gain ± SE (pts)": [gain_text(r) for r in rows],
        "p (Holm)": [p_text(r.get("convergence_p_holm", float("nan"))) for r in rows],
        "noise (pts)": [f"{100 * r['convergence_noise']:.2f}" if math.isfinite(r["convergence_noise"]) else "n/a"
                        for r in rows],
        "convergence": [verdict(r) for r in rows],
        **{f"s to {int(100 * fraction)} % of {BASELINE} [95 % CI]": [time_interval(r, column) for r in rows]
           for column, fraction in TARGETS.items()},
    })


def check_sentence(summary: pd.DataFrame) -> str:
    """One or two sentences for the opening paragraph."""
    if "budget_limited" not in summary:
        return ""
    clear = summary[summary["informative"]] if "informative" in summary else summary
    limited = list(clear.loc[clear["budget_limited"].eq(True), "head"])
    unsure = [row["head"] for _, row in clear.iterrows() if inconclusive(row)]
    also = (f" Inconclusive (a gain above the noise that did not survive its own error, Holm-corrected): "
            f"{', '.join(unsure)}." if unsure else "")
    if limited:
        return (f"Budget-limited (the convergence check's gain at twice the epochs exceeds the head's noise, the "
                f"spread of its final models over searches and seeds, and survives its own error; more training may "
                f"narrow their verdicts): {', '.join(limited)}.{also}")
    if clear.empty or clear["budget_limited"].isna().all():
        return ""
    return ("No head is budget-limited: no head's gain from doubling the epochs both exceeded its noise (the spread "
            f"of its final models over searches and seeds) and survived its own error.{also}")


def section(summary: pd.DataFrame) -> list:
    """The report's lines for the convergence check, or none when it did not run."""
    if "convergence_gain" not in summary:
        return []
    return ["## Convergence and accuracy against time", "", PROCEDURE, "", TIME_PROCEDURE, "", READINGS, "",
            check_table(summary).to_markdown(index=False, disable_numparse=True), "",
            "![Validation accuracy against training time](accuracy_vs_time.png)", ""]
