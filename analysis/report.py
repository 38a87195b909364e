"""The generated report: an opening paragraph computed from the numbers, then tables (summary.md and the terminal)."""
import math

import pandas as pd

from analysis import convergence_report
from analysis.control import control_result
from analysis.results import BASELINE, CHANCE_MULTIPLE, MIN_UNITS, QUALITY, VERDICTS, pareto_eligible
from analysis.stats import ALPHA
from analysis.timing_protocol import MAX_EPOCHS_PER_ROUND
from study.metrics import ECE_BINS, PROB_FLOOR

PERCENT = {"accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "ece", "floored_target_share",
           "superclass_error_share"}
LABELS = {"floored_target_share": "target at p floor"}  # short column names where the metric's name is long

PROCEDURE = (f"Each head is compared with {BASELINE} on the same test images by a t-test of the mean accuracy "
             f"difference whose standard error adds seed-to-seed variance (of per-seed accuracy differences, paired "
             f"by seed when both heads have the same usable seeds, else per head: the t-test over seeds) and the "
             f"image-to-image variance beyond it (seed-averaged per-image differences, less the per-model noise a "
             f"two-way seeds x images analysis of variance attributes to the seed term), with Satterthwaite "
             f"degrees of freedom; the p-values of all heads tested are Holm-corrected together, so the chance of "
             f"any false 'better' or 'worse' is at most {ALPHA:.0%}. Heads whose mean accuracy, or {BASELINE}'s, is "
             f"below {CHANCE_MULTIPLE:g}x chance are not compared (uninformative), nor are heads (or a "
             f"{BASELINE}) with fewer than {MIN_UNITS} usable seeds: with two, the seeds' variance rests on one "
             f"difference, and a small one makes the test far too sure. Each head was tuned by one search, whose "
             f"selected configuration counts as fixed here: how far another search would move a head is not in this "
             f"test (README, The search's noise).")
SEARCH_PROCEDURE = (
    f"Each head was tuned by {{searches}} independent searches (each with its own sampler seed, ASHA and trial "
    f"seeds, and an equal share of the head's trials), and each search's selected configuration was retrained with "
    f"its own seeds; search r of every head has the same seeds. A search's models are averaged into one unit, so "
    f"the configuration a search happens to select is a source of variance beside seeds and images. Each head is "
    f"compared with {BASELINE} on the same test images by a t-test of the mean accuracy difference whose standard "
    f"error adds the variance between searches (of per-search accuracy differences, paired by search when both "
    f"heads have the same usable searches, else per head), which holds the seeds' noise too, and the "
    f"image-to-image variance beyond it (per-image differences averaged over searches, less the noise a two-way "
    f"searches x images analysis of variance attributes to the search term), with Satterthwaite degrees of "
    f"freedom (the search term's: searches - 1); the p-values of all heads tested are Holm-corrected together, so "
    f"the chance of any false 'better' or 'worse' is at most {ALPHA:.0%} (python -m analysis.error_rate "
    f"simulates it). Heads whose mean accuracy, or {BASELINE}'s, is below {CHANCE_MULTIPLE:g}x chance are not "
    f"compared (uninformative), nor are heads (or a {BASELINE}) with fewer than {MIN_UNITS} usable searches: "
    f"with two, the search's variance rests on one difference, and when that happens to be small the test is far "
    f"too sure (simulated: 2 searches call a difference in about a quarter of studies with none). Not in the test: "
    f"the backbone, trained once and shared by every head, so every verdict holds for this backbone (another one "
    f"moves all heads together, and may move them differently); and the search budget itself (a larger search may "
    f"select better).")


def procedure(searches: int) -> str:
    return SEARCH_PROCEDURE.format(searches=searches) if searches > 1 else PROCEDURE


def noise_table(summary: pd.DataFrame) -> pd.DataFrame:
    """How far re-searching and reseeding each move a head's test accuracy (the measurement behind the test's
    unit)."""
    def points(value):
        return f"{100 * value:.2f}" if math.isfinite(value) else "n/a"

    return pd.DataFrame({"head": summary["head"], "searches": summary["searches"],
                         "SD between searches (pts)": [points(v) for v in summary["search_sd"]],
                         "SD between seeds of one search (pts)": [points(v) for v in summary["seed_sd"]]})


def with_ci(mean, half, percent=False, digits=2):
    scale = 100 if percent else 1
    if mean is None or not math.isfinite(mean):
        return "n/a"
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * half:.{digits}f}" if half is not None and math.isfinite(half) else "")


def format_p(p) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"  # tiny p-values keep their magnitude


def pareto_heads(summary: pd.DataFrame, more_accurate: dict, dearer: dict) -> list:
    """Heads no other head dominates, with both uncertainties respected. A dominates B when A is not less accurate
    than B (by the pairwise seed-image test, more_accurate[(B, A)] False), not dearer (by the pairwise cost
    interval, dearer[(A, B)] False), and better on one of the two by its verdict. A difference neither test
    resolves removes no head. Only heads clear of chance with measured costs take part."""
    eligible = list(summary.loc[pareto_eligible(summary), "head"])

    def dominates(a, b):
        if more_accurate.get((b, a)) or dearer.get((a, b)):
            return False
        return bool(more_accurate.get((a, b)) or dearer.get((b, a)))

    return [b for b in eligible if not any(dominates(a, b) for a in eligible if a != b)]


PARETO_RULE = ("A head is off the accuracy/epoch-time front only when another head is not less accurate (seed-image "
               "test on every pair, Holm-corrected together) and not dearer (each pair's per-round epoch-time ratio, "
               "median interval at 95 % family-wise over the pairs), and better on one of the two; a difference "
               "neither resolves removes no head.")


def ratio_text(row, column: str) -> str:
    low, high = row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    interval = f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) and math.isfinite(high) else " [n/a]"
    return f"{row[column]:.2f}x{interval}"


def cost_sentence(summary: pd.DataFrame) -> str:
    """Each head's time in its loss against the baseline's: median ratio over the timing rounds, its family-wise
    interval and the verdict it gives."""
    if BASELINE not in set(summary["head"]):
        return ""
    rows = summary[(summary["head"] != BASELINE) & summary["head_time_ratio"].notna()]
    if rows.empty:
        return ""
    rounds = int(summary["timing_rounds"].max())
    others = len(rows)
    parts = [f"{r['head']} {ratio_text(r, 'head_time_ratio')} {r['head_time_ratio_verdict']}"
             for _, r in rows.iterrows()]
    return (f"Time in the head's loss per epoch relative to {BASELINE} (median of the per-round ratios over {rounds} "
            f"rounds [interval at {1 - ALPHA / others:.2%} for each of the {others} ratios, so {1 - ALPHA:.0%} for "
            f"all together]; cheaper or dearer only when the interval excludes 1): " + "; ".join(parts) + ".")


def chance_line(summary: pd.DataFrame) -> str:
    num_classes = int(summary["num_classes"].iloc[0])
    return f"{100 * CHANCE_MULTIPLE / num_classes:.1f} % ({CHANCE_MULTIPLE:g}x chance for {num_classes} classes)"


def searches_are_units(comparisons: pd.DataFrame) -> bool:
    """Whether the comparisons' unit was the search (comparisons.csv written before the column: the seed)."""
    return "unit" in comparisons and comparisons["unit"].iloc[0] == "search"


def verdict_sentence(comparisons: pd.DataFrame) -> str:
    def heads(key):
        frame = comparisons[comparisons["verdict"] == VERDICTS[key]]
        if key in ("better", "worse"):
            return ", ".join(f"{r['head']} ({100 * r['accuracy_diff']:+.2f} pts, Holm p={format_p(r['p_holm'])})"
                             for _, r in frame.iterrows()) or "none"
        return ", ".join(frame["head"]) or "none"

    tested = int(comparisons["tests_in_family"].iloc[0])
    sources = ("search (its seeds included) and image variance" if searches_are_units(comparisons)
               else "seed and image variance")
    parts = [f"Against {BASELINE} ({tested} head(s) tested, {sources}, Holm-corrected at "
             f"{ALPHA:.0%}): better: {heads('better')}; worse: {heads('worse')}; not distinguishable: {heads('same')}"]
    for key in [k for k in VERDICTS if k not in ("better", "worse", "same")]:  # every reason a head was not tested
        if (comparisons["verdict"] == VERDICTS[key]).any():
            parts.append(f"{VERDICTS[key]}: {heads(key)}")
    return "; ".join(parts) + "."


def opening_paragraph(summary: pd.DataFrame, comparisons: pd.DataFrame, missing, seeds: int,
                      searches: int = 1) -> str:
    clear = summary[summary["informative"]]
    trained = summary[summary["seeds"] > 0]  # heads with at least one model that did not diverge
    control = control_result(summary, comparisons)
    untrusted = control.failed and not clear.empty  # the verdicts stand only if the A/A control did not fail
    parts = []
    if trained.empty:
        parts.append("Every final model diverged: there is nothing to compare.")
    elif clear.empty:
        parts.append(f"Every head's mean test accuracy is below {chance_line(summary)}: these models learned too "
                     f"little for their heads to matter, so this run ranks nothing and declares no head better or "
                     f"worse; it shows that the pipeline runs.")
    else:
        if untrusted:  # first, and instead of naming the most accurate head
            parts.append(control.sentence)
        else:
            best = clear.sort_values("accuracy", ascending=False).iloc[0]
            over = f"{searches} searches x {seeds} seed(s)" if searches > 1 else f"up to {seeds} seed(s)"
            unit = "searches" if searches > 1 else "seeds"
            parts.append(f"Over {over} per head (diverged models left out), the highest mean test "
                         f"accuracy is {best['head']}'s "
                         f"({with_ci(best['accuracy'], best['accuracy_ci95'], percent=True)} %, mean ± 95 % CI over "
                         f"{unit}); a higher mean alone is not a difference: the verdicts below say which differences "
                         f"hold.")
        if not comparisons.empty:
            verdicts = verdict_sentence(comparisons)
            parts.append(f"Not to be trusted (the A/A control failed): {verdicts}" if untrusted else verdicts)
        if not untrusted:
            parts.append(control.sentence)
        near = trained[~trained["informative"]]
        if not near.empty:
            parts.append(f"Below {chance_line(summary)}, left unranked: {', '.join(near['head'])}.")
    diverged = summary[summary["diverged"] > 0]
    if not diverged.empty:
        parts.append("Diverged final models, left out of every mean, cost and test: " + ", ".join(
            f"{r['head']} {r['diverged']}/{r['seeds_trained']}" for _, r in diverged.iterrows()) + ".")
    timed = clear[clear["median_epoch_time_s"].notna()]
    if not timed.empty:
        devices = set(timed["cost_device"].dropna())
        parts.append(f"Costs measured on {', '.join(sorted(devices))}, by the timing protocol (Cost, below).")
        front = list(summary.loc[summary["pareto"], "head"]) if "pareto" in summary else []
        parts.append("The A/A control failed, so no Pareto front is given: its accuracy side rests on the same tests."
                     if untrusted else
                     f"Accuracy/epoch-time Pareto front, both uncertainties respected: {', '.join(front) or 'none'}.")
    for sentence in (cost_sentence(summary), convergence_report.check_sentence(summary)):
        if sentence:
            parts.append(sentence)
    if missing:
        parts.append(f"Left out, with no finished trial or final model: {', '.join(missing)}.")
    return " ".join(parts)


def quality_table(summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Heads clear of chance first, by mean accuracy; near-chance heads after them, marked, in study order."""
    summary = pd.concat([summary[summary["informative"]].sort_values("accuracy", ascending=False),
                         summary[~summary["informative"]]])
    verdicts = dict(zip(comparisons["head"], comparisons["verdict"])) if not comparisons.empty else {}
    table = pd.DataFrame({"head": summary["head"],
                          "seeds (diverged)": [f"{s} ({d})" for s, d in zip(summary["seeds"], summary["diverged"])]})
    for column in QUALITY:
        if column not in summary:
            continue
        percent = column in PERCENT
        table[LABELS.get(column, column) + (" %" if percent else "")] = [
            with_ci(m, h, percent) for m, h in zip(summary[column], summary[f"{column}_ci95"])]
    limited = summary["budget_limited"].eq(True) if "budget_limited" in summary else [False] * len(summary)
    table[f"vs {BASELINE}"] = [
        ("all diverged" if seeds == 0 else ("baseline" if h == BASELINE else verdicts.get(h, "")) if ok
         else "near chance") + (f" ({convergence_report.BUDGET_LIMITED})" if ok and seeds and short else "")
        for h, ok, seeds, short in zip(summary["head"], summary["informative"], summary["seeds"], limited)]
    return table


HEADLINE = ["head", "seeds (diverged)", "accuracy %", "top5_accuracy %", "f1_macro %", "nll", "ece %"]


def headline_table(summary: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """The short table for README's Results: the quality table's main columns, the head's own time per epoch and
    its ratio to the baseline's (with intervals and the cost verdict), and the accuracy verdict against the
    baseline, in the quality table's order."""
    quality = quality_table(summary, comparisons)
    table = quality[[c for c in HEADLINE if c in quality]].copy()
    by_head = summary.set_index("head")
    table["head s / epoch [95 % CI]"] = [interval(by_head.loc[h], "median_head_time_s", 3) for h in table["head"]]
    table[f"head time / {BASELINE}"] = [interval(by_head.loc[h], "head_time_ratio", 2)
                                        + _verdict(by_head.loc[h], "head_time_ratio") for h in table["head"]]
    table[f"vs {BASELINE}"] = quality[f"vs {BASELINE}"]
    return table


def interval(row, column: str, digits: int) -> str:
    median, low, high = row[column], row[f"{column}_ci_low"], row[f"{column}_ci_high"]
    if column.endswith("_ratio") and row.get(f"{column}_verdict") == "baseline":
        return "baseline"
    if not math.isfinite(median):
        return "n/a"
    bounds = f" [{low:.{digits}f}, {high:.{digits}f}]" if math.isfinite(low) and math.isfinite(high) else " [n/a]"
    return f"{median:.{digits}f}{bounds}"


def cost_table(summary: pd.DataFrame) -> pd.DataFrame:
    rows = [row for _, row in summary.iterrows()]
    return pd.DataFrame({
        "head": summary["head"],
        "epoch s [95 % CI]": [interval(r, "median_epoch_time_s", 3) for r in rows],
        "head s / epoch [95 % CI]": [interval(r, "median_head_time_s", 4) for r in rows],
        "images/s [95 % CI]": [interval(r, "median_images_per_s", 0) for r in rows],
        f"epoch time / {BASELINE}": [interval(r, "epoch_time_ratio", 2) + _verdict(r, "epoch_time_ratio")
                                     for r in rows],
        f"head time / {BASELINE}": [interval(r, "head_time_ratio", 2) + _verdict(r, "head_time_ratio")
                                    for r in rows],
        "head params": [f"{p:,}" for p in summary["head_params"]],
        "train cost": summary["train_cost"], "inference cost": summary["infer_cost"],
    })


def _verdict(row, column: str) -> str:
    text = row.get(f"{column}_verdict") or ""
    return f" {text}" if text and text != "baseline" else ""


def cost_notes(summary: pd.DataFrame) -> list:
    measured = summary[summary["timing_rounds"] > 0]
    if measured.empty:
        return ["Costs: not measured."]
    first = measured.iloc[0]
    return [f"Costs: {first['cost_source']}, on {first['cost_device']}. Every head's final configuration was "
            "trained in one process with the device to itself: a discarded warm-up round, then rounds in which "
            "every head trains the whole epochs that fill its share of the round (at least the study's "
            f"timing_round_s by its warm-up epoch, at most {MAX_EPOCHS_PER_ROUND} epochs; one epoch in the smoke "
            "presets), the order rotated by one place each round. Each figure is the median over rounds with a "
            "distribution-free 95 % interval (order statistics); a ratio to "
            f"{BASELINE} is taken within each round, and its interval is at 1 - 5 %/m for the m heads compared, so "
            "the cost verdicts together are at 95 %. `python -m analysis RUN --retime` measures them again.",
            PARETO_RULE]


def comparison_table(comparisons: pd.DataFrame) -> pd.DataFrame:
    if comparisons.empty:
        return comparisons
    unit = "searches" if searches_are_units(comparisons) else "seeds"

    def points(value):
        return f"{100 * value:+.2f}" if math.isfinite(value) else "n/a"

    return pd.DataFrame({
        "head": comparisons["head"],
        f"accuracy - {BASELINE} (pts) [95 % CI]": [
            f"{points(d)} [{points(lo)}, {points(hi)}]" if math.isfinite(d) else "n/a"
            for d, lo, hi in zip(comparisons["accuracy_diff"], comparisons["diff_ci_low"],
                                 comparisons["diff_ci_high"])],
        f"SE {unit} / images (pts)": [f"{100 * s:.2f} / {100 * i:.2f}" if math.isfinite(s) else "n/a"
                                    for s, i in zip(comparisons["se_seeds"], comparisons["se_images"])],
        "p": [format_p(p) for p in comparisons["p_value"]],
        "p (Holm)": [format_p(p) for p in comparisons["p_holm"]],
        "verdict": comparisons["verdict"],
    })


def metric_notes() -> list:
    return [
        f"NLL: every head's probabilities are floored at {PROB_FLOOR:g} (log {math.log(PROB_FLOOR):.2f}); 'target at "
        f"p floor' is the share of test images whose true class got at most that probability (for sparsemax and "
        f"entmax: outside the predicted support). Their NLL is mostly that share x {-math.log(PROB_FLOOR):.2f}.",
        f"ECE: {ECE_BINS} equal-width bins of the predicted class's probability. Top-5 and every ranking metric "
        f"rank classes as the model does (sparse heads: by their scores, not by tied zero probabilities).",
        "Tuning trials share devices, so their epoch times are not costs; the cost table comes from the timing "
        "protocol alone.",
    ]


def render(summary, comparisons, missing, seeds, rule: dict, notes, kind: str = "", searches: int = 1,
           confusion_lines=()) -> str:
    """kind: which kind of study this was and what it measures (study.study_kind.describe); seeds: per search's
    configuration; searches: per head; confusion_lines: the section on the most frequent confusions
    (analysis/confusions.py: report_lines; none up to its MATRIX_CLASSES classes)."""
    sections = ["# softmax-study results", ""]
    if kind:
        sections += [f"**Study kind.** {kind[0].upper()}{kind[1:]}", ""]
    sections += [
        opening_paragraph(summary, comparisons, missing, seeds, searches), "",
        "## Quality on the test split (mean ± 95 % CI over " + (
            "searches, each the mean of its non-diverged seeds)" if searches > 1 else "non-diverged seeds)"), "",
        quality_table(summary, comparisons).to_markdown(index=False), "",
        "## Cost", "", cost_table(summary).to_markdown(index=False), "",
        *convergence_report.section(summary),
    ]
    if not comparisons.empty:
        sections += [f"## Comparison with {BASELINE}", "", procedure(searches), "",
                     comparison_table(comparisons).to_markdown(index=False), ""]
        if searches > 1:
            sections += ["What moves each head's test accuracy: another search (SD between its searches' means) "
                         "and another seed (pooled SD between the seeds of one search's configuration).", "",
                         noise_table(summary).to_markdown(index=False), ""]
    sections += list(confusion_lines)
    per = "search" if searches > 1 else "head"
    sections += ["## Selection rule", "",
                 f"Best trial per {per}: {rule['metric']} ({rule['mode']}) at {rule['scope']}; excluded: "
                 f"{rule['excluded']}. Why: {rule['why']}.", ""]
    sections += ["## Notes", "", *[f"- {note}" for note in metric_notes() + cost_notes(summary) + list(notes)], ""]
    return "\n".join(sections)
