"""Tidy frames of the final models: one row per (head, seed), a summary per head, and paired comparisons."""
import numpy as np
import pandas as pd

from analysis.retrain import load_predictions
from analysis.stats import mean_ci, paired_bootstrap, paired_t_pvalue
from study.metrics import all_metrics

QUALITY = ["accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "nll", "ece",
           "superclass_error_share"]
COST = ["median_epoch_time_s", "median_head_time_s", "median_images_per_s"]
BASELINE = "softmax"


def median_of(history, key):
    values = [epoch[key] for epoch in history if epoch.get(key) is not None]
    return float(np.median(values)) if values else float("nan")


def per_seed_frame(pred_dir, models) -> pd.DataFrame:
    """models: [(head, seed)] with saved predictions. The first epoch is left out of time medians (warm-up)."""
    rows = []
    for head, seed in models:
        log_probs, labels, record = load_predictions(pred_dir, head, seed)
        history = record["history"]
        timed = history[1:] or history
        rows.append({
            "head": head, "seed": seed, **all_metrics(log_probs, labels, record["coarse_of_fine"] or None),
            "median_epoch_time_s": median_of(timed, "epoch_time_s"),
            "median_head_time_s": median_of(timed, "head_time_s"),
            "median_images_per_s": median_of(timed, "images_per_s"),
            "epochs": len(history), "diverged": any(e.get("diverged") for e in history),
            "head_params": record["head_params"], "train_cost": record["train_cost"],
            "infer_cost": record["infer_cost"], "device": record["device"],
        })
    return pd.DataFrame(rows)


def summary_frame(per_seed: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for head, group in per_seed.groupby("head", sort=False):
        row = {"head": head, "seeds": len(group)}
        for column in QUALITY + COST:
            mean, half = mean_ci(group[column]) if column in group else (float("nan"), float("nan"))
            row[column], row[f"{column}_ci95"] = mean, half
        first = group.iloc[0]
        row.update(head_params=int(first["head_params"]), train_cost=first["train_cost"],
                   infer_cost=first["infer_cost"])
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_frame(pred_dir, per_seed: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """Each head against the baseline on the same test images: paired bootstrap over images (per-image accuracy
    averaged over seeds) and a paired t-test over seeds."""
    if baseline not in set(per_seed["head"]):
        return pd.DataFrame()
    correct = {}
    for head, group in per_seed.groupby("head", sort=False):
        hits = []
        for seed in group["seed"]:
            log_probs, labels, _ = load_predictions(pred_dir, head, seed)
            hits.append(log_probs.argmax(1) == labels)
        correct[head] = np.mean(hits, axis=0)
    base_acc = per_seed[per_seed["head"] == baseline].set_index("seed")["accuracy"]
    rows = []
    for head in correct:
        if head == baseline:
            continue
        diff, low, high, p_boot = paired_bootstrap(correct[head], correct[baseline])
        head_acc = per_seed[per_seed["head"] == head].set_index("seed")["accuracy"]
        shared = head_acc.index.intersection(base_acc.index)
        rows.append({"head": head, "baseline": baseline, "accuracy_diff": diff, "diff_ci_low": low,
                     "diff_ci_high": high, "p_bootstrap": p_boot,
                     "p_ttest_seeds": paired_t_pvalue(head_acc[shared], base_acc[shared]),
                     "significant_5pct": bool(p_boot < 0.05)})
    return pd.DataFrame(rows)
