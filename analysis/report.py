"""The generated report: an opening paragraph computed from the numbers, then tables (summary.md and the terminal)."""
import math

import pandas as pd

from analysis.results import BASELINE

PERCENT = ["accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "ece",
           "superclass_error_share"]


def with_ci(mean, half, percent=False, digits=2):
    scale = 100 if percent else 1
    if mean is None or not math.isfinite(mean):
        return "n/a"
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * half:.{digits}f}" if half is not None and math.isfinite(half) else "")


def pareto_heads(summary: pd.DataFrame):
    """Heads no other head beats on both accuracy (higher) and median epoch time (lower)."""
    front = []
    for _, row in summary.iterrows():
        acc, time_s = row["accuracy"], row["median_epoch_time_s"]
        dominated = any(o["accuracy"] >= acc and o["median_epoch_time_s"] <= time_s
                        and (o["accuracy"] > acc or o["median_epoch_time_s"] < time_s) for _, o in summary.iterrows())
        if not dominated:
            front.append(row["head"])
    return front


def opening_paragraph(summary: pd.DataFrame, comparisons: pd.DataFrame, missing, seeds: int) -> str:
    ranked = summary.sort_values("accuracy", ascending=False)
    best = ranked.iloc[0]
    parts = [f"Over {seeds} seed(s) per head, the highest test accuracy is {best['head']}'s "
             f"({with_ci(best['accuracy'], best['accuracy_ci95'], percent=True)} %, mean ± 95 % CI)."]
    if not comparisons.empty:
        better = comparisons[(comparisons["significant_5pct"]) & (comparisons["accuracy_diff"] > 0)]
        worse = comparisons[(comparisons["significant_5pct"]) & (comparisons["accuracy_diff"] < 0)]
        same = comparisons[~comparisons["significant_5pct"]]
        describe = lambda frame: ", ".join(f"{r['head']} ({100 * r['accuracy_diff']:+.2f} pts, p={r['p_bootstrap']:.3f})"
                                           for _, r in frame.iterrows()) or "none"
        parts.append(f"Against {BASELINE} (paired bootstrap over test images, 5 % level): significantly better: "
                     f"{describe(better)}; significantly worse: {describe(worse)}; not distinguishable: "
                     f"{', '.join(same['head']) or 'none'}.")
    fastest = summary.sort_values("median_epoch_time_s").iloc[0]
    parts.append(f"The fastest epoch is {fastest['head']}'s ({fastest['median_epoch_time_s']:.3f} s median).")
    if BASELINE in set(summary["head"]):
        base = summary.set_index("head").loc[BASELINE]
        if base["median_head_time_s"] > 0:
            ratios = ", ".join(f"{r['head']} {r['median_head_time_s'] / base['median_head_time_s']:.2f}x"
                               for _, r in summary.iterrows() if r["head"] != BASELINE)
            parts.append(f"Time in the head's loss per epoch relative to {BASELINE}: {ratios}.")
    parts.append(f"Accuracy/epoch-time Pareto front: {', '.join(pareto_heads(summary))}.")
    if missing:
        parts.append(f"Left out, with no finished trial or final model: {', '.join(missing)}.")
    return " ".join(parts)


def quality_table(summary: pd.DataFrame) -> pd.DataFrame:
    summary = summary.sort_values("accuracy", ascending=False)
    table = pd.DataFrame({"head": summary["head"], "seeds": summary["seeds"]})
    for column in ["accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "nll", "ece",
                   "superclass_error_share"]:
        percent = column in PERCENT
        table[column + (" %" if percent else "")] = [with_ci(m, h, percent) for m, h in
                                                    zip(summary[column], summary[f"{column}_ci95"])]
    return table


def cost_table(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "head": summary["head"],
        "epoch s (median)": [with_ci(m, h, digits=3) for m, h in
                             zip(summary["median_epoch_time_s"], summary["median_epoch_time_s_ci95"])],
        "head s / epoch": [with_ci(m, h, digits=4) for m, h in
                           zip(summary["median_head_time_s"], summary["median_head_time_s_ci95"])],
        "images/s": [f"{m:,.0f}" for m in summary["median_images_per_s"]],
        "head params": [f"{p:,}" for p in summary["head_params"]],
        "train cost": summary["train_cost"], "inference cost": summary["infer_cost"],
    })


def comparison_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    if comparisons.empty:
        return comparisons
    return pd.DataFrame({
        "head": comparisons["head"],
        f"accuracy - {BASELINE} (pts)": [f"{100 * d:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]" for d, lo, hi in
                                          zip(comparisons["accuracy_diff"], comparisons["diff_ci_low"],
                                              comparisons["diff_ci_high"])],
        "p (bootstrap, images)": [f"{p:.4f}" for p in comparisons["p_bootstrap"]],
        "p (paired t, seeds)": [f"{p:.4f}" if math.isfinite(p) else "n/a" for p in comparisons["p_ttest_seeds"]],
    })


def render(summary, comparisons, missing, seeds, rule: dict, notes) -> str:
    sections = [
        "# softmax-study results", "", opening_paragraph(summary, comparisons, missing, seeds), "",
        "## Quality on the test split (mean ± 95 % CI over seeds)", "", quality_table(summary).to_markdown(index=False),
        "", "## Cost", "", cost_table(summary).to_markdown(index=False), "",
    ]
    if not comparisons.empty:
        sections += [f"## Paired comparison with {BASELINE}", "", comparison_table(comparisons).to_markdown(index=False),
                     ""]
    sections += ["## Selection rule", "",
                 f"Best trial per head: {rule['metric']} ({rule['mode']}) at {rule['scope']}; excluded: "
                 f"{rule['excluded']}. Why: {rule['why']}.", ""]
    if notes:
        sections += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(sections)
