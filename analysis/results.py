"""Tidy frames of the final models: one row per (head, seed), a summary per head, and the verdicts against softmax.

Diverged models (a non-finite training loss, or test log-probabilities that are not all finite) are counted per
head and left out of every mean, cost and comparison alike; their metrics are NaN, never a score.

The unit of every mean's interval and every test is the search when a study ran several per head (a search's
models averaged into one unit: analysis/stats.py, search_rows), else the seed (the one configuration then counts
as fixed, and the report says so).
"""
import numpy as np
import pandas as pd

from analysis.cost_stats import summarise
from analysis.retrain import load_predictions
from analysis.stats import ALPHA, holm, informative, mean_ci, paired_t_pvalue, search_rows, seed_image_test
from study.metrics import METRICS, compact_metrics
from study.timing import steady_median

QUALITY = METRICS
COST = ["median_epoch_time_s", "median_head_time_s", "median_images_per_s"]
RATIOS = ["epoch_time_ratio", "head_time_ratio"]
BASELINE = "softmax"
# A head's models are compared only when their mean test accuracy is at least this multiple of chance (3 % for
# 100 classes). Below it the models have learned too little for the head to matter: differences there are noise
# in where a near-uniform argmax lands, and the report says so instead of ranking them.
CHANCE_MULTIPLE = 3.0

VERDICTS = {
    "better": f"better than {BASELINE}",
    "worse": f"worse than {BASELINE}",
    "same": "not distinguishable",
    "near_chance": "uninformative (near chance)",
    "one_seed": "not tested (one seed: its variance is unknown)",
    "one_search": "not tested (one search with a usable model: the search's variance is unknown)",
    "few_searches": "not tested (fewer than 3 searches with a usable model: too few to measure the search's noise)",
    "few_seeds": "not tested (fewer than 3 seeds: too few to measure the seeds' noise)",
    "diverged": "not tested (every final model diverged)",
    "baseline_diverged": f"not tested (every final model of {BASELINE} diverged)",
    "baseline_near_chance": f"not tested ({BASELINE} is near chance)",
}


def load_all(pred_dir, models) -> dict:
    """{(head, seed): Prediction} for every final model, each loaded once."""
    return {(head, seed): load_predictions(pred_dir, head, seed) for head, seed in models}


def per_seed_frame(predictions: dict, searches: dict = None) -> pd.DataFrame:
    """One row per final model (searches: {(head, seed): the search that selected its configuration}, 0 for all
    when not given). Times are kept only from models that had their device to themselves."""
    rows = []
    for (head, seed), pred in predictions.items():
        record = pred.record
        history = record["history"]
        metrics = compact_metrics(pred.compact, record["coarse_of_fine"] or None)
        diverged = any(e.get("diverged") for e in history) or not np.isfinite(metrics["accuracy"])
        alone = bool(record.get("timed_alone")) and not diverged
        rows.append({
            "head": head, "seed": seed, "search": (searches or {}).get((head, seed), 0), "diverged": diverged,
            "num_classes": pred.compact.num_classes,
            **(dict.fromkeys(metrics, float("nan")) if diverged else metrics),
            **{f"median_{key}": steady_median(e.get(key) for e in history) if alone else float("nan")
               for key in ("epoch_time_s", "head_time_s", "images_per_s")},
            "timed_alone": alone, "epochs": len(history),
            "head_params": record["head_params"], "train_cost": record["train_cost"],
            "infer_cost": record["infer_cost"], "device": record["device"], "device_name": record.get("device_name"),
        })
    return pd.DataFrame(rows)


def summary_frame(per_seed: pd.DataFrame, costs: dict = None) -> pd.DataFrame:
    """Per head: mean and 95 % CI half-width over its non-diverged seeds, how many diverged, and its costs from the
    timing protocol's record (costs: costs.json; analysis/cost_stats.py): each figure's median over rounds with its
    95 % interval, and the ratios to the baseline with their family-wise intervals and verdicts."""
    cost_rows = summarise(costs, BASELINE) if costs else {}
    device = costs["device"]["text"] if costs else None
    rows = []
    by_search = by_searches(per_seed)
    for head, group in per_seed.groupby("head", sort=False):
        usable = group[~group["diverged"]]
        row = {"head": head, "seeds": len(usable), "seeds_trained": len(group),
               "diverged": int(group["diverged"].sum()), "num_classes": int(group["num_classes"].iloc[0]),
               "searches": usable["search"].nunique(), **spread(usable, by_search)}
        for column in QUALITY:
            row[column], row[f"{column}_ci95"] = (mean_ci(unit_values(usable, column, by_search)) if column in usable
                                                  else (np.nan, np.nan))
        measured = cost_rows.get(head)
        if measured is not None:
            row.update(measured)
            protocol = costs["protocol"]
            row["cost_device"] = device
            row["cost_source"] = (f"{protocol['timed_rounds']} interleaved rounds after a warm-up round, alone on "
                                  "the device")
        else:
            for column in COST:
                row[column] = row[f"{column}_ci_low"] = row[f"{column}_ci_high"] = float("nan")
            for column in RATIOS:
                row[column] = row[f"{column}_ci_low"] = row[f"{column}_ci_high"] = float("nan")
                row[f"{column}_verdict"] = ""
            row["timing_rounds"], row["cost_device"], row["cost_source"] = 0, None, "not measured"
        row["informative"] = informative(row["accuracy"], row["num_classes"], CHANCE_MULTIPLE)
        first = group.iloc[0]
        params = (costs or {}).get("head_params", {}).get(head, first["head_params"])  # the code timed, when measured
        row.update(head_params=int(params), train_cost=first["train_cost"], infer_cost=first["infer_cost"])
        rows.append(row)
    return pd.DataFrame(rows)


def by_searches(per_seed: pd.DataFrame) -> bool:
    """Whether the study's unit is the search: some head's final models come from more than one search."""
    return bool((per_seed.groupby("head")["search"].nunique() > 1).any())


def unit_values(models: pd.DataFrame, column: str, by_search: bool) -> pd.Series:
    """One value per unit of a head's usable models: each search's mean over its seeds, or each seed's."""
    return models.groupby("search", sort=True)[column].mean() if by_search else models[column]


def spread(models: pd.DataFrame, by_search: bool) -> dict:
    """What moves a head's test accuracy, in accuracy fractions: the SD between its searches' means (NaN without
    two searches) and the pooled SD between seeds of one search's configuration (NaN without two seeds in one)."""
    within = [g["accuracy"].to_numpy() for _, g in models.groupby("search") if len(g) >= 2]
    df = sum(len(v) - 1 for v in within)
    seed_sd = float(np.sqrt(sum(((v - v.mean()) ** 2).sum() for v in within) / df)) if df else np.nan
    means = unit_values(models, "accuracy", True)
    search_sd = float(means.std(ddof=1)) if by_search and len(means) >= 2 else np.nan
    return {"search_sd": search_sd, "seed_sd": seed_sd}


# The fewest units (searches, or seeds in a single-search study) a head and the baseline each need for a verdict.
# With two, the unit variance is estimated from a single difference: when that one happens to be small, the
# Satterthwaite degrees of freedom come from the image term and the test is far too sure. Simulated
# (python -m analysis.error_rate, 400 studies of 8 null heads): 2 searches x 1 or 2 seeds call a difference in 29 %
# or 24 % of studies; 3 x 1, 3 x 2, 4 x 1 and 4 x 2 stay at or below 5 %.
MIN_UNITS = 3


def pareto_eligible(summary: pd.DataFrame) -> pd.Series:
    """Which heads take part in the Pareto front (and its plot): clear of chance, with measured costs."""
    return summary["informative"] & summary["median_epoch_time_s"].notna()


def pairwise_accuracy(predictions: dict, per_seed: pd.DataFrame, heads) -> dict:
    """{(a, b): True when a is more accurate than b} among `heads`, by the seed-image test on every unordered pair,
    Holm-corrected over all of them (the Pareto front's accuracy side)."""
    units = test_units(predictions, per_seed)
    pairs, p_values, diffs = [], [], []
    heads = [h for h in heads if h in units and len(units[h][1]) >= MIN_UNITS]
    for i, a in enumerate(heads):
        for b in heads[i + 1:]:
            result = seed_image_test(units[a][0], units[b][0], units[a][1], units[b][1])
            pairs.append((a, b))
            p_values.append(result.p)
            diffs.append(result.diff)
    better = {}
    for (a, b), p, d in zip(pairs, holm(p_values) if p_values else [], diffs):
        significant = bool(np.isfinite(p) and p <= ALPHA)
        better[(a, b)], better[(b, a)] = significant and d > 0, significant and d < 0
    return better


def correct_matrix(predictions: dict, head: str, seeds) -> np.ndarray:
    """[S, N] 1 where seed s's model ranks the true class of test image i first."""
    return np.stack([predictions[(head, s)].compact.correct for s in seeds])


def test_units(predictions: dict, per_seed: pd.DataFrame) -> dict:
    """{head: ([units, N] correctness table, unit ids)} over its usable models: one row per search (its seeds
    averaged) when the study's unit is the search, else one row per seed. Heads with no usable model are absent."""
    by_search = by_searches(per_seed)
    units = {}
    for head, group in per_seed.groupby("head", sort=False):
        models = group[~group["diverged"]]
        if models.empty:
            continue
        correct = correct_matrix(predictions, head, list(models["seed"]))
        units[head] = search_rows(correct, models["search"]) if by_search else (correct, list(models["seed"]))
    return units


def comparisons_frame(predictions: dict, per_seed: pd.DataFrame, summary: pd.DataFrame,
                      baseline: str = BASELINE) -> pd.DataFrame:
    """Each head against the baseline on the same test images, by analysis.stats.seed_image_test (seed and image
    variance together), Holm-corrected over every head actually tested; near-chance, diverged and one-seed heads
    get a verdict saying why they were not tested, and do not count towards the correction."""
    if baseline not in set(per_seed["head"]):
        return pd.DataFrame()
    usable = {h: list(g.loc[~g["diverged"], "seed"]) for h, g in per_seed.groupby("head", sort=False)}
    info = summary.set_index("head")
    units, by_search = test_units(predictions, per_seed), by_searches(per_seed)
    rows = []
    for head in usable:
        if head == baseline:
            continue
        row = {"head": head, "baseline": baseline, "seeds": len(usable[head]), "baseline_seeds": len(usable[baseline]),
               "accuracy_diff": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan, "se_seeds": np.nan,
               "se_images": np.nan, "df": np.nan, "p_value": np.nan, "p_ttest_seeds": np.nan, "paired_seeds": False}
        if not usable[head]:
            row["verdict"] = VERDICTS["diverged"]
        elif not usable[baseline]:
            row["verdict"] = VERDICTS["baseline_diverged"]
        elif not info.loc[head, "informative"]:
            row["verdict"] = VERDICTS["near_chance"]
        elif not info.loc[baseline, "informative"]:
            row["verdict"] = VERDICTS["baseline_near_chance"]
        else:
            (table, ids), (base_table, base_ids) = units[head], units[baseline]
            result = seed_image_test(table, base_table, ids, base_ids)
            row.update(accuracy_diff=result.diff, diff_ci_low=result.ci_low, diff_ci_high=result.ci_high,
                       se_seeds=result.se_seeds, se_images=result.se_images, df=result.df, p_value=result.p,
                       paired_seeds=result.paired_seeds, units=len(ids), baseline_units=len(base_ids))
            if result.paired_seeds:  # the t-test over the units' accuracies alone, for reference
                row["p_ttest_seeds"] = paired_t_pvalue(table.mean(1), base_table.mean(1))
            one = VERDICTS["one_search"] if by_search else VERDICTS["one_seed"]
            few = VERDICTS["few_searches"] if by_search else VERDICTS["few_seeds"]
            row["verdict"] = (one if np.isnan(result.p) else few if min(len(ids), len(base_ids)) < MIN_UNITS
                              else None)
            if row["verdict"] is not None:
                row["p_value"] = np.nan  # untested: not counted in the Holm correction
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["p_holm"] = holm(frame["p_value"])
    tested = frame["verdict"].isna()
    frame.loc[tested, "verdict"] = [
        VERDICTS["same"] if p > ALPHA else VERDICTS["better"] if d > 0 else VERDICTS["worse"]
        for p, d in zip(frame.loc[tested, "p_holm"], frame.loc[tested, "accuracy_diff"])]
    frame["tests_in_family"] = int(tested.sum())
    frame["unit"] = "search" if by_search else "seed"
    return frame
