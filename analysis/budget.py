"""How far more epochs move each head: the measurement behind a preset's epochs (README, "The budget").

    python -m analysis.budget runs/NAME --epochs 10,20,40 --seeds 2

Each head's configuration chosen by its first search in a finished study is trained again on the tuning split at
every budget in --epochs, with --seeds seeds (the first search's final-model seeds), and scored on the validation
split after its last epoch; the test split is not touched. Printed per head: the mean validation accuracy at each
budget, the gain of each step to the next, and the seed noise (the SD of one run's accuracy between seeds, pooled
over the budgets). The convergence check's criterion (analysis/convergence_stats.py) is then applied to each step,
every head of a step together: a step is budget-limited when its gain exceeds the noise and survives its own error
(a one-sided t-test over the seeds' pairs, Holm-corrected across the heads). The runs are Ray tasks of one CPU each
(two at a time on two cores), longest first; the total time is printed.
"""
import argparse
import math
import time

import numpy as np

from study import cli
from study.errors import StudyError


def budgets(text: str) -> list:
    """An argparse type: epochs separated by commas, two or more, increasing (e.g. 10,20,40)."""
    values = [cli.whole(1)(part) for part in text.split(",")]
    if len(values) < 2 or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"'{text}' is not two or more budgets in increasing order, e.g. 10,20,40")
    return values


def build_parser():
    p = cli.ArgumentParser(prog="python -m analysis.budget", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a finished study's run directory, e.g. runs/default")
    p.add_argument("--epochs", type=budgets, default=[10, 20, 40],
                   help="the budgets, in epochs, in increasing order (default: 10,20,40)")
    p.add_argument("--seeds", type=cli.whole(2), default=2, help="runs per head and budget (default 2)")
    p.add_argument("--head", help="heads to measure, separated by commas (default: every head of the study)")
    return p


def budget_jobs(spec, summaries, heads, budgets, seeds) -> list:
    """[(head, epochs, seed, config)] for every head, budget and seed: the first search's best configuration on
    the tuning split, longest runs first (the runs pack better on two cores)."""
    from analysis.select import best_trials, final_config
    from study.search.searches import final_seeds

    best = best_trials(summaries)
    jobs = []
    for head in heads:
        trial = (best.get(head) or [None])[0]
        if trial is None:
            continue
        for epochs in budgets:
            for seed in final_seeds(spec.seed, 0, seeds):
                cfg = final_config(spec, head, trial["params"], seed, epochs, device="cpu")
                jobs.append((head, epochs, seed, cfg.replace(**{"data.final": False})))
    return sorted(jobs, key=lambda job: -job[1])


def step_rows(finals: dict, budgets) -> list:
    """One row per head: mean final validation accuracy at each budget (%), each step's gain (points), the pooled
    seed noise (points) and which steps are budget-limited by the convergence check's criterion, all heads of a
    step judged together. finals: {(head, epochs): {seed: accuracy}}; a head with fewer than two seeds at some
    budget has no noise and no row."""
    from analysis.convergence_stats import convergence_verdicts

    rows, noise, runs = {}, {}, {}
    for head in dict.fromkeys(h for h, _ in finals):
        runs[head] = [finals.get((head, e), {}) for e in budgets]
        if any(len(r) < 2 for r in runs[head]):
            continue
        values = [np.fromiter(r.values(), float) for r in runs[head]]
        noise[head] = math.sqrt(np.mean([v.var(ddof=1) for v in values]))
        rows[head] = {"head": head, **{f"{e} ep %": 100 * v.mean() for e, v in zip(budgets, values)},
                      "noise (pts)": 100 * noise[head]}
    for step, (short, long) in enumerate(zip(budgets, budgets[1:])):
        pairs = {head: [(runs[head][step][seed], runs[head][step + 1][seed]) for seed in sorted(runs[head][step])
                        if seed in runs[head][step + 1]] for head in rows}
        for head, found in convergence_verdicts(pairs, noise).items():
            rows[head][f"gain {short}->{long} (pts)"] = 100 * found["convergence_gain"]
            rows[head][f"{short}->{long}"] = step_verdict(found)
    return list(rows.values())


def step_verdict(found: dict) -> str:
    if found["budget_limited"] is None:
        return "unknown"
    if found["budget_limited"]:
        return "budget-limited"
    return "inconclusive" if found["convergence_gain"] > found["convergence_noise"] else "within noise"


def main(argv=None):
    args = build_parser().parse_args(argv)
    import pandas as pd
    import torch

    from analysis.configs import as_json
    from analysis.convergence import train_on_tuning_split
    from study.frozen import check_same_features
    from study.inputs import load_splits
    from study.search.cluster import connect_ray
    from study.search.rundir import RunDir
    from study.timing import describe_device

    run = RunDir(args.run_dir)
    spec = run.read_spec()
    heads = args.head.split(",") if args.head else list(spec.heads)
    unknown = [h for h in heads if h not in spec.heads]
    if unknown:
        raise StudyError(f"--head {','.join(unknown)}: not in this study; its heads: {', '.join(spec.heads)}")
    jobs = budget_jobs(spec, run.read_summaries(heads, spec.searches), heads, args.epochs, args.seeds)
    if not jobs:
        raise StudyError(f"{run.path}: no head of {', '.join(heads)} has a finished search to measure")
    splits = load_splits(jobs[0][3])
    check_same_features(spec.frozen_features, splits, "the budget measurement")
    print(f"{len(jobs)} runs ({len(heads)} heads x {len(args.epochs)} budgets x {args.seeds} seeds) on the tuning "
          f"split; {describe_device(torch.device('cpu'))['text']}", flush=True)
    started, finals = time.time(), {}

    def keep(job, record):
        head, epochs, seed, _ = job
        history = record["history"]
        diverged = any(e.get("diverged") for e in history) or len(history) < epochs
        if not diverged:
            finals.setdefault((head, epochs), {})[seed] = history[-1]["val_acc"]
        print(f"  {head} seed {seed}, {epochs} epochs: val_acc {history[-1]['val_acc']:.4f}"
              f"{' (diverged: left out)' if diverged else ''} ({time.time() - started:.0f} s)", flush=True)

    import ray

    connect_ray(None)
    task = ray.remote(num_cpus=1)(train_on_tuning_split)
    splits_ref = ray.put(splits)
    pending = {task.remote(as_json(job[3]), splits_ref): job for job in jobs}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        keep(pending.pop(ready), ray.get(ready))
    print(f"\n{len(jobs)} runs in {time.time() - started:.0f} s\n")
    print(pd.DataFrame(step_rows(finals, args.epochs)).to_markdown(index=False, floatfmt=".2f"))


if __name__ == "__main__":
    cli.run(main)
