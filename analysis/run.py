"""The analysis pipeline: run directory -> best configs -> final models (cached) -> frames -> files and report."""
import contextlib
import json
import os
from pathlib import Path

import pandas as pd
import torch

from analysis import confusions, convergence, plots, report, results, retrain, timing_protocol
from analysis.configs import as_json
from analysis.convergence_stats import run_noise
from analysis.search_plots import search_plots
from analysis.select import best_trials, final_config
from analysis.tensorboard_export import export as export_tensorboard
from study.errors import ConfigError, StudyError
from study.frozen import FILE_ID_PREFIX, check_same_features
from study.study_kind import describe as describe_kind
from study.inputs import load_splits
from study.locks import exclusive
from study.search.rundir import RunDir
from study.search.searches import SearchId, final_seeds
from study.selection import RULE


def choose_executor(address, gpus_per_run, cpus_per_run=None):
    """Ray tasks when there are GPUs to spread over, a cluster to join, or (with cpus_per_run) room on this machine
    for two CPU runs side by side; else train one model after another in this process."""
    gpu = torch.cuda.is_available()
    if address is None and not gpu and gpus_per_run:
        raise ConfigError(f"--gpus-per-run {gpus_per_run:g} asks for a GPU but none is visible here")
    side_by_side = cpus_per_run is not None and (os.cpu_count() or 1) >= 2 * cpus_per_run
    if address is None and not gpu and not side_by_side:
        return None, "cpu"
    from study.search.cluster import check_address, connect_ray

    check_address(address)
    connect_ray(address)
    share = gpus_per_run if gpus_per_run is not None else (0.25 if gpu else 0.0)
    return {"num_gpus": share, "num_cpus": cpus_per_run or 1}, "cuda" if share > 0 else "cpu"


def analyse(run_dir, seeds=None, epochs=None, force=False, address=None, gpus_per_run=None, cpus_per_run=None,
            log=print, spec=None, retime=False) -> Path:
    """The analysis of a run directory (`spec`: the run's, when the caller holds it already, e.g. a resumed study
    whose data moved; else read from the run). retime: measure the costs again (the timing protocol), reusing
    every saved final model."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    spec = spec if spec is not None else run.read_spec()
    with contextlib.ExitStack() as held:
        return analyse_run(run, spec, seeds, epochs, force, address, gpus_per_run, cpus_per_run, log, retime, held)


def analyse_run(run, spec, seeds, epochs, force, address, gpus_per_run, cpus_per_run, log, retime, held) -> Path:
    if spec.dry_run:
        raise StudyError(f"{run.path} is a dry run ({spec.dry_run.gpus:g} simulated GPU(s), trials shrunk to "
                         "seconds): its accuracies are not a study's; run the study without --dry-run")
    seeds = seeds if seeds is not None else spec.final_seeds
    summaries = run.read_summaries(spec.heads, spec.searches)
    best = best_trials(summaries)
    notes = [f"{h}: search not finished (no summary.json); left out" for h in spec.heads if h not in summaries]
    notes += [f"{SearchId(h, r).label if spec.searches > 1 else h}: no finished, non-diverged trial; left out"
              for h, trials in best.items() for r, t in enumerate(trials) if t is None]
    heads = [h for h in spec.heads if any(best.get(h) or [])]
    if not heads:
        raise StudyError(f"{run.path}: no head has a finished trial to analyse")
    chosen = {h: [(r, t) for r, t in enumerate(best[h]) if t is not None] for h in heads}  # searches with a winner
    out, pred_dir = run.analysis_dir, run.predictions_dir
    ray_resources, device = choose_executor(address, gpus_per_run, cpus_per_run)  # checked before anything is written
    if spec.frozen_features and spec.frozen_features.startswith(FILE_ID_PREFIX):  # a features file: still the same?
        check_same_features(spec.frozen_features, load_splits(spec.train, log=log), "the analysis")
    # The run's lock before the first write: shared with the study that holds it, refused to any other process.
    held.enter_context(exclusive(run.path, f"run {run.path}"))
    out.mkdir(exist_ok=True)
    # The first search's jobs first: the timing protocol times each head's first job's configuration.
    jobs = [retrain.Job(h, s, final_config(spec, h, trial["params"], s, epochs, device), r)
            for h in heads for r, trial in chosen[h] for s in final_seeds(spec.seed, r, seeds)]
    run.best_configs_file.write_text(json.dumps({
        "rule": RULE, "searches": spec.searches, "seeds_per_search": seeds,
        "heads": {h: [{"search": r + 1, "trial_id": trial["trial_id"], "val_acc": trial["last_val_acc"],
                       "params": trial["params"], "seeds": final_seeds(spec.seed, r, seeds),
                       "final_config": as_json(next(j.config for j in jobs if j.head == h and j.search == r))}
                      for r, trial in chosen[h]]
                  for h in heads},
    }, indent=2))
    retrain.run_jobs(jobs, pred_dir, ray_resources, force=force, log=log, features_id=spec.frozen_features,
                     retime=retime, round_seconds=spec.timing_round_s, rounds=spec.timing_rounds)

    # After the timing protocol, which must have the device to itself; validation only, never the test split. A
    # final model that holds its validation accuracy is its pair's 1x run: only the 2x runs are trained then.
    sources = convergence_sources(jobs, spec.searches)
    final_records = {(j.head, j.seed): retrain.cached_record(pred_dir, j) for j in sources}
    check_jobs = convergence.check_jobs(sources, final_records)
    check_records = convergence.run_check(check_jobs, pred_dir / "convergence", ray_resources, force=force and not
                                          retime, log=log, features_id=spec.frozen_features,
                                          final_records=final_records)

    predictions = results.load_all(pred_dir, [(j.head, j.seed) for j in jobs])
    per_seed = results.per_seed_frame(predictions, {(j.head, j.seed): j.search for j in jobs})
    costs = timing_protocol.load_costs(pred_dir, timing_protocol.protocol_configs(jobs, spec.timing_rounds),
                                       spec.timing_round_s)
    summary = results.summary_frame(per_seed, costs)
    noise = {head: run_noise(group["accuracy"]) for head, group in per_seed[~per_seed["diverged"]].groupby("head")}
    judged = summary.loc[summary["informative"], "head"]  # a near-chance head gets no convergence verdict
    summary = summary.merge(convergence.check_frame(check_records, heads, costs, noise, judged=judged), on="head",
                            how="left")
    comparisons = results.comparisons_frame(predictions, per_seed, summary)
    summary["pareto"] = summary["head"].isin(pareto_front(summary, predictions, per_seed, costs))
    per_seed.to_csv(run.results_file, index=False)
    summary.to_csv(run.summary_csv, index=False)
    comparisons.to_csv(run.comparisons_file, index=False)
    notes += [f"{r['head']} seed {r['seed']}: the final model diverged; left out" for _, r in per_seed.iterrows()
              if r["diverged"]]

    confusion_pngs, frequent_confusions = confusions.write(run.confusion_dir, predictions, per_seed)
    records = {key: pred.record for key, pred in predictions.items()}
    notes += head_notes(records)
    if spec.searches > 1:
        notes.append("Costs: each head's configuration from its first search with a selected trial (the timing "
                     "protocol times one configuration per head; its other searches' configurations may differ in "
                     "the knobs that set a head's cost, e.g. a tree layout or the number of sampled classes).")
    plots.pareto_plot(summary, run.pareto_png)
    time_curves = convergence.curve_frame(check_records, heads, costs)
    time_curves.to_csv(run.accuracy_vs_time_csv, index=False)
    plots.accuracy_vs_time_plot(time_curves, convergence.target_lines(summary), run.accuracy_vs_time_png)
    # Learning curves and Optuna's views: each head's first search that selected a trial.
    firsts = {h: SearchId(h, chosen[h][0][0]) for h in heads}
    curves = pd.concat([run.trial_curve(firsts[h].name, chosen[h][0][1]["trial_id"]).assign(head=h) for h in heads],
                       ignore_index=True)
    if "val_acc" in curves:
        plots.learning_curves_plot(curves, run.learning_curves_png)
    problem = run.optuna_db_problem()
    if problem:
        notes.append(f"search history and importance plots: {run.optuna_db} could not be read ({problem}); "
                     "everything else here comes from the intact files")
    else:
        for head in heads:
            notes += search_plots(run.optuna_url, firsts[head].name, out)
    export_tensorboard(run.tensorboard_dir, per_seed, records, confusion_pngs)

    text = report.render(summary, comparisons, notes=notes, missing=[h for h in spec.heads if h not in heads],
                         seeds=seeds, rule=RULE, kind=describe_kind(spec.train, class_count(records)),
                         searches=spec.searches, confusion_lines=confusions.report_lines(frequent_confusions))
    run.report_file.write_text(text)
    run.headline_file.write_text(report.headline_table(summary, comparisons).to_markdown(
        index=False, disable_numparse=True) + "\n")  # keep the figures as formatted
    log(text)
    log(f"analysis written to {out} (TensorBoard: tensorboard --logdir {run.tensorboard_dir})")
    return out


def convergence_sources(jobs, searches: int) -> list:
    """The final models whose configuration and seed the convergence check pairs at 1x and 2x, per head the first
    convergence.PAIRS: with several searches, the first searches' configurations with the first of their seeds;
    with one search, its first seeds. The 1x run is the final model itself where its record holds its validation
    accuracy (analysis/convergence.py). (The check's noise is all the final models' spread.)"""
    firsts, chosen = {}, []
    for job in jobs:  # jobs come search by search, seeds in order
        if searches > 1:
            if (job.head, job.search) in firsts:
                continue
            firsts[(job.head, job.search)] = job
        if sum(c.head == job.head for c in chosen) < convergence.PAIRS:
            chosen.append(job)
    return chosen


def pareto_front(summary, predictions, per_seed, costs) -> list:
    """The heads on the accuracy/epoch-time front, each pair compared by its accuracy test and its cost interval."""
    from analysis.cost_stats import pairwise_dearer

    eligible = list(summary.loc[results.pareto_eligible(summary), "head"])
    if not eligible or costs is None:
        return []
    return report.pareto_heads(summary, results.pairwise_accuracy(predictions, per_seed, eligible),
                               pairwise_dearer(costs, eligible))


def class_count(records: dict) -> int:
    """K, from the final models' records (each names every class)."""
    return len(next(iter(records.values()))["fine_names"])


def head_notes(records: dict) -> list:
    """What each head built other than its knobs asked (Head.notes, saved with each final model), once per head and
    note: e.g. a clustered tree's groups that k-means could not split."""
    seen = {}
    for (head, _), record in records.items():
        for note in record.get("head_notes") or []:  # absent from records saved before the field existed
            seen.setdefault((head, note), None)
    return [f"{head}: {note}" for head, note in seen]
