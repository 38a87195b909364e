"""`python -m analysis.kscaling RUN_DIR ...`: the K-scaling sweep's table, crossover K per head and plot.

    python -m analysis.kscaling runs/kscaling-k100 runs/kscaling-k1000 runs/kscaling-k10000 --out runs/kscaling

Reads what each K's study wrote (`python -m study.bench.kscaling`): its analysis's summary.csv (test accuracy with
its 95 % interval; the timing protocol's head time per epoch and its ratio to softmax, each with its interval and
verdict) and comparisons.csv (each head's accuracy verdict against softmax, over the searches, Holm-corrected), and
kscaling.json (the budget, the heads left out and why, each head's probe: peak memory of a trial, one epoch).

A head's **crossover K** is the smallest K of the sweep at which its head time is cheaper than softmax's (the
ratio's interval below 1, the timing protocol's verdict) while its accuracy is not worse (the verdict is "not
distinguishable" or "better than softmax"; a head not tested, near chance, or left out at that K does not qualify),
or "none up to" the largest K. Writes kscaling.csv, kscaling.md (what it prints) and kscaling.png under --out.
"""
import csv
import json
import math
from pathlib import Path

from study import cli
from study.errors import StudyError
from study.files import write_text_atomic

BASELINE = "softmax"
NOT_WORSE = ("not distinguishable", f"better than {BASELINE}")
CHEAPER = "cheaper"


def build_parser():
    p = cli.ArgumentParser(prog="python -m analysis.kscaling", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="the sweep's run directories, e.g. runs/kscaling-k100")
    p.add_argument("--out", default="runs/kscaling", help="folder for kscaling.csv, .md and .png (default "
                                                          "runs/kscaling)")
    return p


def read_csv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_point(run_dir: Path) -> dict:
    """One K's rows: {"classes", "budget", "device", "rows": [...]} from its run directory."""
    record_file, summary_file = run_dir / "kscaling.json", run_dir / "analysis" / "summary.csv"
    for needed in (record_file, summary_file):
        if not needed.is_file():
            raise StudyError(f"{run_dir} is not a finished K-scaling run (no {needed.relative_to(run_dir)}); run "
                             "python -m study.bench.kscaling --classes K to make or finish it")
    record = json.loads(record_file.read_text())
    budget = record["budget"]
    comparisons = run_dir / "analysis" / "comparisons.csv"
    against = {row["head"]: row for row in read_csv(comparisons)
               if row["baseline"] == BASELINE} if comparisons.is_file() else {}
    rows, device = [], None
    for found in read_csv(summary_file):
        head = found["head"]
        device = device or found.get("cost_device")
        rows.append({
            "classes": budget["classes"], "head": head,
            "accuracy": number(found["accuracy"]), "accuracy_ci95": number(found["accuracy_ci95"]),
            "verdict": "baseline" if head == BASELINE else against.get(head, {}).get("verdict", "not compared"),
            # its accuracy minus softmax's, with the comparison's 95 % interval (analysis/results.py)
            "diff": number(against.get(head, {}).get("accuracy_diff")),
            "diff_low": number(against.get(head, {}).get("diff_ci_low")),
            "diff_high": number(against.get(head, {}).get("diff_ci_high")),
            "informative": found.get("informative") == "True",
            "budget_limited": found.get("budget_limited") == "True",
            "head_time_s": number(found["median_head_time_s"]),
            "head_time_s_low": number(found["median_head_time_s_ci_low"]),
            "head_time_s_high": number(found["median_head_time_s_ci_high"]),
            "ratio": number(found["head_time_ratio"]), "ratio_low": number(found["head_time_ratio_ci_low"]),
            "ratio_high": number(found["head_time_ratio_ci_high"]),
            "cost_verdict": found.get("head_time_ratio_verdict") or "",
            "peak_rss_mb": record["probes"].get(head, {}).get("peak_rss_mb"),
            "left_out": "",
        })
    for head, reason in record["left_out"].items():
        empty = dict.fromkeys(rows[0]) if rows else {}
        rows.append({**empty, "classes": budget["classes"], "head": head, "verdict": "left out",
                     "informative": False, "budget_limited": False, "cost_verdict": "",
                     "peak_rss_mb": record["probes"][head]["peak_rss_mb"], "left_out": reason})
    return {"classes": budget["classes"], "budget": budget, "device": device, "rows": rows,
            "majority_share": majority_share(data_path(run_dir, record["data"])) if "data" in record else None}


def data_path(run_dir: Path, recorded: str) -> Path:
    """The run's data file: where it was recorded, else where the sweep puts it beside the run (records made before
    f4ac981 hold a path relative to the folder the sweep ran from)."""
    path = Path(recorded)
    return path if path.is_file() else run_dir.parent / "kscaling-data" / path.name


def majority_share(path: Path):
    """The test accuracy of always answering the most frequent training class (the best answer that ignores the
    input; far above 1/K under Zipf frequencies), or None when the data file is not where the run left it."""
    import numpy as np

    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        most = int(np.bincount(arrays["train_labels"]).argmax())
        return float(np.mean(arrays["test_labels"] == most))


def crossover(rows, head: str):
    """The row of the smallest K at which `head` is cheaper than softmax and not worse, or None."""
    for row in sorted((r for r in rows if r["head"] == head), key=lambda r: r["classes"]):
        if row["cost_verdict"] == CHEAPER and row["verdict"] in NOT_WORSE:
            return row
    return None


def crossover_line(rows, head: str, largest: int) -> str:
    """The crossover table's row: the K, and there the accuracy difference and cost ratio with their intervals (a
    "not distinguishable" verdict with a wide interval shows no difference, not the absence of one)."""
    row = crossover(rows, head)
    if row is None:
        return f"| {head} | none up to {largest:,} | | |"
    points = [None if v is None else 100 * v for v in (row["diff"], row["diff_low"], row["diff_high"])]
    return (f"| {head} | {row['classes']:,} | {fmt(points[0], '+.2f')} [{fmt(points[1], '+.2f')}, "
            f"{fmt(points[2], '+.2f')}] | {fmt(row['ratio'], '.2f')} [{fmt(row['ratio_low'], '.2f')}, "
            f"{fmt(row['ratio_high'], '.2f')}] |")


def ms(seconds):
    return None if seconds is None else 1000 * seconds


def fmt(value, spec: str, missing: str = "—") -> str:
    return missing if value is None else format(value, spec)


def table(points) -> str:
    rows = [row for point in points for row in point["rows"]]
    largest = max(point["classes"] for point in points)
    lines = ["| K | head | test accuracy (95 % CI) | against softmax | head time per epoch, ms (95 % interval) | "
             "ratio to softmax (95 % interval) | cost | peak MB of a trial |",
             "|---:|---|---|---|---|---|---|---:|"]
    for row in sorted(rows, key=lambda r: (r["classes"], r["head"] != BASELINE, r["head"])):
        if row["left_out"]:
            lines.append(f"| {row['classes']:,} | {row['head']} | — | left out: {row['left_out']} | — | — | — | "
                         f"{fmt(row['peak_rss_mb'], '.0f')} |")
            continue
        # one usable final model has a mean but no interval (analysis/stats.py: NaN, read as None)
        accuracy = (f"{row['accuracy']:.1%} ± {fmt(row['accuracy_ci95'], '.1%', 'no interval')}"
                    if row["accuracy"] is not None else "—")
        if row["budget_limited"]:
            accuracy += " (budget-limited)"
        time_ms = (f"{fmt(ms(row['head_time_s']), '.1f')} ({fmt(ms(row['head_time_s_low']), '.1f')}–"
                   f"{fmt(ms(row['head_time_s_high']), '.1f')})")
        ratio = "1" if row["head"] == BASELINE else (f"{fmt(row['ratio'], '.2f')} ({fmt(row['ratio_low'], '.2f')}–"
                                                     f"{fmt(row['ratio_high'], '.2f')})")
        lines.append(f"| {row['classes']:,} | {row['head']} | {accuracy} | {row['verdict']} | {time_ms} | {ratio} | "
                     f"{row['cost_verdict'] or '—'} | {fmt(row['peak_rss_mb'], '.0f')} |")
    heads = sorted({row["head"] for row in rows} - {BASELINE})
    lines += ["", "| head | crossover K (cheaper than softmax, accuracy not worse) | there: accuracy against softmax, "
                  "points (95 % CI) | there: head time ratio (95 % interval) |", "|---|---|---|---|"]
    lines += [crossover_line(rows, head, largest) for head in heads]
    lines += ["", "Budgets (every head the same at a K):"]
    for point in points:
        b = point["budget"]
        lines.append(f"- K = {b['classes']:,}: {b['train_per_class'] * b['classes']:,} training rows "
                     f"({b['train_per_class']} a class on average), {b['test_per_class'] * b['classes']:,} test rows; "
                     f"{b['searches']} searches of {b['trials_per_search']} trials, {b['epochs']} epochs, one final "
                     f"model per search; heads whose probe epoch exceeds {b['max_epoch_s']:g} s left out. "
                     + (f"Always answering the most frequent class scores {point['majority_share']:.1%} of the test "
                        "rows. " if point["majority_share"] is not None
                        else "Its data file was not found: what always answering the most frequent class scores is "
                             "not computed. ")
                     + f"Costs on {point['device']}.")
    return "\n".join(lines) + "\n"


def plot(points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for point in points for row in point["rows"] if not row["left_out"]]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for head in sorted({row["head"] for row in rows}):
        mine = sorted((r for r in rows if r["head"] == head and r["accuracy"] is not None),
                      key=lambda r: r["classes"])
        if mine:
            left.errorbar([r["classes"] for r in mine], [r["accuracy"] for r in mine],
                          yerr=[r["accuracy_ci95"] or 0 for r in mine], marker="o", capsize=3, label=head)
        timed = [r for r in mine if r["ratio"] is not None or head == BASELINE]
        if timed:
            ratios = [1.0 if head == BASELINE else r["ratio"] for r in timed]
            # a ratio with too few rounds for an interval has no bounds (analysis/cost_stats.py): drawn without a bar
            low = [0 if head == BASELINE or r["ratio_low"] is None else r["ratio"] - r["ratio_low"] for r in timed]
            high = [0 if head == BASELINE or r["ratio_high"] is None else r["ratio_high"] - r["ratio"]
                    for r in timed]
            right.errorbar([r["classes"] for r in timed], ratios, yerr=[low, high], marker="o", capsize=3,
                           label=head)
    left.set(xscale="log", xlabel="classes K", ylabel="test accuracy (95 % CI)", title="Accuracy against K")
    right.set(xscale="log", yscale="log", xlabel="classes K", ylabel="head time / softmax's (95 % interval)",
              title="Head cost against K (below 1: cheaper)")
    right.axhline(1.0, color="grey", linewidth=0.8)
    left.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_csv(points, path: Path) -> None:
    rows = [row for point in points for row in point["rows"]]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None):
    args = build_parser().parse_args(argv)
    run_dirs, out = [Path(d) for d in args.run_dirs], Path(args.out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out {out} is a file, not a folder")
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise StudyError(f"{run_dir} is not a folder; give the sweep's run directories, e.g. runs/kscaling-k100")
    points = sorted((read_point(d) for d in run_dirs), key=lambda p: p["classes"])
    classes = [p["classes"] for p in points]
    if len(set(classes)) != len(classes):
        raise StudyError(f"two run directories are of the same K ({', '.join(map(str, classes))}); give one per K")
    out.mkdir(parents=True, exist_ok=True)
    text = table(points)
    plot(points, out / "kscaling.png")  # the figure first: what can fail on odd values fails before the text is kept
    write_csv(points, out / "kscaling.csv")
    write_text_atomic(out / "kscaling.md", text)
    print(text + f"\nwrote {out / 'kscaling.md'}, {out / 'kscaling.csv'} and {out / 'kscaling.png'}", flush=True)


if __name__ == "__main__":
    cli.run(main)
