"""Analysis on the checked-in fixture run (no training), its statistics, and its handling of incomplete runs."""
import dataclasses
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
import pytest

from analysis import results, retrain, timing_protocol
from analysis.__main__ import main as analysis_main
from analysis.run import analyse
from analysis.select import best_trials
from analysis.stats import mean_ci
from study.errors import StudyError

from conftest import assert_one_line_error

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_run"
OUTPUTS = ["best_configs.json", "results.csv", "summary.csv", "comparisons.csv", "summary.md", "pareto.png",
           "learning_curves.png", "confusion/softmax.png", "confusion/softmax.csv", "confusion/softmax_superclass.png",
           "confusion/softmax_superclass.csv", "search_history_softmax.png", "headline.md", "accuracy_vs_time.png",
           "accuracy_vs_time.csv"]
CONVERGENCE_COLUMNS = ["convergence_gain", "convergence_gain_se", "convergence_p", "convergence_p_holm",
                       "convergence_noise", "budget_limited", *(
    f"time_to_{p}_s{end}" for p in (90, 99) for end in ("", "_ci_low", "_ci_high"))]


class TrainingCalled(Exception):
    pass


@pytest.fixture
def run_dir(tmp_path):
    target = tmp_path / "tiny_run"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise TrainingCalled("analysis tried to train a model")

    monkeypatch.setattr(retrain, "train_final", refuse)
    monkeypatch.setattr(retrain, "load_final_splits", lambda cfg: None)  # no data needed to be refused


def quiet(*args):
    pass


def macro_f1_by_counting(labels, predicted, num_classes):
    """Per-class F1 from true/false positives and false negatives counted here, averaged over all classes."""
    scores = []
    for k in range(num_classes):
        tp = int(np.sum((predicted == k) & (labels == k)))
        fp = int(np.sum((predicted == k) & (labels != k)))
        fn = int(np.sum((predicted != k) & (labels == k)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def check_outputs_consistent(out: Path, seeds: int):
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    results = pd.read_csv(out / "results.csv")
    for _, row in results.iterrows():
        # The saved arrays read here directly: the full log-probabilities of a model saved before the compact format
        # (the checked-in fixture), the class ranked first of one saved after.
        with np.load(out / "predictions" / f"{row['head']}_seed{row['seed']}.npz", allow_pickle=False) as saved:
            labels = saved["labels"]
            predicted = saved["log_probs"].argmax(1) if "log_probs" in saved.files else saved["predicted"]
            classes = saved["log_probs"].shape[1] if "log_probs" in saved.files else int(saved["num_classes"])
        assert row["accuracy"] == pytest.approx((predicted == labels).mean())
        assert row["f1_macro"] == pytest.approx(macro_f1_by_counting(labels, predicted, classes))
    for head, group in results.groupby("head"):
        confusion = pd.read_csv(out / "confusion" / f"{head}.csv", index_col=0).to_numpy()
        assert confusion.sum() == seeds * len(labels)
        assert np.trace(confusion) / confusion.sum() == pytest.approx(group["accuracy"].mean())
    summary = pd.read_csv(out / "summary.csv")
    text = (out / "summary.md").read_text()
    clear = summary[summary["informative"]]
    if clear.empty:  # near chance: nothing is ranked and no head is called better or worse
        assert "this run ranks nothing and declares no head better or worse" in text
    else:
        winner = clear.sort_values("accuracy", ascending=False).iloc[0]
        assert f"the highest mean test accuracy is {winner['head']}'s ({100 * winner['accuracy']:.2f}" in text
    # The convergence check, recomputed from its saved runs: per head judged (not near chance), its pairs (a seed's
    # final val_acc at 1x and 2x, at most two pairs); gain = their differences' mean; SE = the differences' SD pooled
    # over the judged heads / sqrt(pairs); flagged when the gain exceeds the SD of the head's final models' test
    # accuracies and its one-sided t-test survives Holm's correction over the judged heads.
    assert set(CONVERGENCE_COLUMNS) <= set(summary.columns)
    diffs, noises = {}, {}
    for _, row in summary.iterrows():
        finals = {}
        for path in (out / "predictions" / "convergence").glob(f"{row['head']}_seed*_*ep.json"):
            seed, epochs = map(int, re.search(r"_seed(\d+)_(\d+)ep\.json$", path.name).groups())
            history = json.loads(path.read_text())["history"]
            assert len(history) == epochs
            finals[(seed, epochs)] = history[-1]["val_acc"]
        long = max(epochs for _, epochs in finals)
        for seed in sorted({seed for seed, epochs in finals if epochs == long}):
            # A final model that holds its validation accuracy is its pair's 1x run (it replaces a 1x record).
            model = json.loads((out / "predictions" / f"{row['head']}_seed{seed}.json").read_text())
            if "val_acc" in model:
                finals[(seed, model["config"]["optim"]["epochs"])] = model["val_acc"]
        short = min(epochs for _, epochs in finals)
        seeds_run = sorted({seed for seed, _ in finals})
        assert len(seeds_run) == min(seeds, 2) and long == 2 * short and len(finals) == 2 * len(seeds_run)
        if row["head"] in set(clear["head"]):
            diffs[row["head"]] = np.array([finals[(s, long)] - finals[(s, short)] for s in seeds_run])
            noises[row["head"]] = statistics.stdev(results.loc[results["head"] == row["head"], "accuracy"])
        else:  # near chance: no verdict
            assert math.isnan(row["convergence_gain"]) and pd.isna(row["budget_limited"])
    if diffs:
        freedom = sum(len(d) - 1 for d in diffs.values())
        pooled = math.sqrt(sum(((d - d.mean()) ** 2).sum() for d in diffs.values()) / freedom)
        p_raw = {h: stats.t.sf(d.mean() / (pooled / math.sqrt(len(d))), freedom) for h, d in diffs.items()}
        ordered = sorted(p_raw, key=p_raw.get)
        p_holm = {h: max(min(1, (len(ordered) - i) * p_raw[o]) for i, o in enumerate(ordered[:ordered.index(h) + 1]))
                  for h in ordered}
        for head, d in diffs.items():
            row = summary.set_index("head").loc[head]
            assert row["convergence_gain"] == pytest.approx(d.mean())
            assert row["convergence_noise"] == pytest.approx(noises[head])
            assert row["convergence_p_holm"] == pytest.approx(p_holm[head])
            assert bool(row["budget_limited"]) == (d.mean() > noises[head] and p_holm[head] <= 0.05)
    comparisons = pd.read_csv(out / "comparisons.csv")
    for _, row in comparisons.iterrows():
        if row["verdict"] in ("better than softmax", "worse than softmax"):
            assert row["p_holm"] <= 0.05 and bool(clear["head"].isin([row["head"]]).any())
    # The headline table (README's Results) carries, per head, the accuracy mean and CI half-width of results.csv's
    # seeds, and the head's time.
    headline = (out / "headline.md").read_text().splitlines()
    for _, row in summary.iterrows():
        accuracies = results.loc[(results["head"] == row["head"]) & ~results["diverged"], "accuracy"]
        half = stats.t.ppf(0.975, len(accuracies) - 1) * accuracies.std(ddof=1) / np.sqrt(len(accuracies))
        (line,) = [line for line in headline if line.startswith(f"| {row['head']} ")]
        assert f"{100 * accuracies.mean():.2f} ± {100 * half:.2f}" in line, line
        assert f"{row['median_head_time_s']:.3f}" in line


def test_fixture_analysis_without_training(run_dir, no_training):
    out = analyse(run_dir, log=quiet)
    check_outputs_consistent(out, seeds=2)
    best = json.loads((out / "best_configs.json").read_text())
    assert best["rule"]["metric"] == "val_acc" and set(best["heads"]) == {"softmax", "hierarchical"}
    assert (out / "tensorboard" / "softmax" / "seed1").is_dir()  # final seeds start after the study seed (0)


def test_running_twice_reuses_models_and_force_retrains(run_dir, no_training):
    analyse(run_dir, log=quiet)
    analyse(run_dir, log=quiet)  # would raise TrainingCalled if it retrained
    with pytest.raises(TrainingCalled):
        analyse(run_dir, force=True, log=quiet)
    assert len(list((run_dir / "analysis" / "predictions").glob("*.npz"))) == 4  # a failed --force loses nothing


def test_different_epochs_need_new_models(run_dir, no_training):
    with pytest.raises(TrainingCalled):
        analyse(run_dir, epochs=5, log=quiet)


def test_head_without_finished_search_is_reported(run_dir, no_training):
    (run_dir / "hierarchical" / "summary.json").unlink()
    out = analyse(run_dir, log=quiet)
    text = (out / "summary.md").read_text()
    assert "hierarchical: search not finished" in text and "Left out" in text
    assert set(pd.read_csv(out / "results.csv")["head"]) == {"softmax"}


def test_head_whose_trials_all_failed_is_reported(run_dir, no_training):
    path = run_dir / "hierarchical" / "summary.json"
    summary = json.loads(path.read_text())
    for trial in summary["trials"]:
        trial["status"] = "diverged"
    path.write_text(json.dumps(summary))
    out = analyse(run_dir, log=quiet)
    assert "hierarchical: no finished, non-diverged trial" in (out / "summary.md").read_text()


def test_run_without_any_finished_head_is_an_error(run_dir):
    for head in ("softmax", "hierarchical"):
        (run_dir / head / "summary.json").unlink()
    with pytest.raises(StudyError, match="no head has a finished trial"):
        analyse(run_dir, log=quiet)


def test_cli_bad_input_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "analysis", "/nonexistent/run"], capture_output=True, text=True,
                            timeout=120)
    assert_one_line_error(result.returncode, result.stderr, "is not a study run directory")


def test_best_trial_excludes_diverged_and_errored():
    summaries = {"h": [{"trials": [
        {"trial_id": "a", "status": "diverged", "last_val_acc": 0.9},
        {"trial_id": "b", "status": "error", "last_val_acc": None},
        {"trial_id": "c", "status": "ok", "last_val_acc": 0.4},
        {"trial_id": "d", "status": "ok", "last_val_acc": 0.5},
    ]}, {"trials": [{"trial_id": "e", "status": "diverged", "last_val_acc": 0.9}]}]}
    best = best_trials(summaries)["h"]  # one per search: the second has no usable trial
    assert best[0]["trial_id"] == "d" and best[1] is None


def test_mean_ci_matches_the_t_interval():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1 / np.sqrt(3), rel=1e-5)
    assert np.isnan(mean_ci([1.0])[1])


def test_final_models_train_as_ray_tasks(run_dir, fixture_run_data_dir):
    """The path used on GPUs and clusters, here with CPU-only tasks on a local Ray; on data of the fixture's size (12
    training images a class: the smoke preset's 500 validation and 500 training images fit in it)."""
    import ray

    from study.search.rundir import RunDir
    from analysis.select import final_config

    run = RunDir(run_dir)
    spec = run.read_spec()
    spec = dataclasses.replace(spec, train=spec.train.replace(**{"data.data_dir": str(fixture_run_data_dir)}))
    best = best_trials(run.read_summaries(spec.heads))
    jobs = [retrain.Job(h, s, final_config(spec, h, best[h][0]["params"], s, epochs=1, device="cpu"))
            for h in spec.heads for s in (1, 2)]
    out = run_dir / "analysis" / "predictions"
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        # One-epoch timing rounds, as the smoke presets time: this test is about where the work runs, not its figures.
        retrain.run_jobs(jobs, out, ray_resources={"num_gpus": 0, "num_cpus": 1}, force=True, log=quiet,
                         round_seconds=0.0)
    finally:
        ray.shutdown()
    for job in jobs:
        pred = retrain.load_predictions(out, job.head, job.seed)
        assert (len(pred.compact), pred.compact.num_classes) == (200, 100) and len(pred.record["history"]) == 1
        # Trained on the tuning split's 500 training images and scored once on its 500 validation images.
        assert (pred.record["train_rows"], pred.record["val_rows"]) == (500, 500) and 0 <= pred.record["val_acc"] <= 1
        assert (out / f"{job.head}_seed{job.seed}.json").stat().st_mtime_ns > before[f"{job.head}_seed{job.seed}.json"]
        assert pred.record["timed_alone"] is False  # concurrent tasks share the cores: their times are not costs
    # so every head was timed again, alone
    costs = timing_protocol.load_costs(out, timing_protocol.protocol_configs(jobs), 0.0)
    assert costs is not None and costs["protocol"]["timed_rounds"] == 9 and costs["device"]["threads"] == 2
    summary = results.summary_frame(results.per_seed_frame(results.load_all(out, [(j.head, j.seed) for j in jobs])),
                                    costs)
    assert summary["median_epoch_time_s"].notna().all() and summary["head_time_ratio_ci_high"].notna().all()
    assert summary["cost_source"].str.startswith("9 interleaved rounds").all()


def test_models_saved_by_older_code_are_not_reused(run_dir, no_training):
    record_path = run_dir / "analysis" / "predictions" / "softmax_seed1.json"
    record = json.loads(record_path.read_text())
    del record["format"]  # as saved before the record format existed (no ranking scores, Gumbel tau, ...)
    record_path.write_text(json.dumps(record))
    with pytest.raises(TrainingCalled):
        analyse(run_dir, log=quiet)


def test_costs_of_another_configuration_are_not_used(run_dir):
    from study.search.rundir import RunDir
    from analysis.select import final_config

    run = RunDir(run_dir)
    spec = run.read_spec()
    best = best_trials(run.read_summaries(spec.heads))
    jobs = [retrain.Job(h, 1, final_config(spec, h, best[h][0]["params"], 1)) for h in spec.heads]
    out = run_dir / "analysis" / "predictions"
    costs_for, protocol_configs = partial(timing_protocol.load_costs, out), timing_protocol.protocol_configs
    assert costs_for(protocol_configs(jobs), spec.timing_round_s) is not None  # the fixture's
    assert costs_for(protocol_configs(jobs), 0.5) is None  # rounds of another length
    longer = [retrain.Job(j.head, 1, j.config.replace(**{"optim.lr": 0.5})) for j in jobs]
    # e.g. other configurations: their costs would be stale
    assert costs_for(protocol_configs(longer), spec.timing_round_s) is None
    # heads timed together: each one's costs still hold
    subset = costs_for(protocol_configs(jobs[:1]), spec.timing_round_s)
    assert list(subset["configs"]) == ["softmax"] and {r["head"] for r in subset["rounds"]} == {"softmax"}
    extra = jobs + [retrain.Job("taylor", 1, jobs[0].config.replace(**{"model.head": "taylor"}))]
    assert costs_for(protocol_configs(extra), spec.timing_round_s) is None  # a head never timed


def test_an_interrupted_analysis_keeps_every_finished_model(run_dir, fixture_run_data_dir, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM, SIGHUP: study/cli.py turns them into Ctrl-C) while the second of the final models
    trains: the first is saved, the command ends with 130 and the line to continue with, and the rerun trains only
    what is missing."""
    from study import cli

    spec = json.loads((run_dir / "study.json").read_text())
    spec["train"]["data"]["data_dir"] = str(fixture_run_data_dir)
    (run_dir / "study.json").write_text(json.dumps(spec))
    predictions = run_dir / "analysis" / "predictions"
    for model in predictions.glob("*_seed*.*"):
        model.unlink()
    train_final, calls = retrain.train_final, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_final(*args, **kwargs)

    monkeypatch.setattr(retrain, "train_final", stopped_at_the_second)
    with pytest.raises(SystemExit) as stop:
        cli.run(analysis_main, [str(run_dir), "--epochs", "1"])
    stderr = capsys.readouterr().err
    assert stop.value.code == 130 and stderr.strip().splitlines() == [
        f"interrupted: the analysis stopped; every finished final model is saved and reused. Continue with: "
        f"python -m analysis {run_dir} --epochs 1"]
    assert (predictions / "softmax_seed1.json").is_file()
    assert not (predictions / "softmax_seed2.json").exists()
    lines = []
    analyse(run_dir, epochs=1, log=lines.append)
    assert "final models: 1 cached, 3 to train; costs measured before, reused" in lines and len(calls) == 5
    # Every final model now holds its validation accuracy: it is its pair's 1x run, and the 2x runs are saved.
    assert any(line.endswith("4 1x runs are the final models, 4 runs saved, 0 to train") for line in lines), [
        line for line in lines if "convergence" in line]


def test_a_run_never_mixes_final_models_trained_on_different_rows(run_dir, monkeypatch):
    """The fixture's models are of format 3 (trained on the training and validation rows together). With all of
    them saved they are reused; once one must be trained, the older ones are trained again with it."""
    from analysis.select import final_config
    from study.search.rundir import RunDir

    run = RunDir(run_dir)
    spec = run.read_spec()
    best = best_trials(run.read_summaries(spec.heads))
    jobs = [retrain.Job(h, s, final_config(spec, h, best[h][0]["params"], s, device="cpu")) for h in spec.heads
            for s in (1, 2)]
    trained = []

    def fake_training(config, splits, threads=None):
        trained.append((config["model"]["head"], config["run"]["seed"]))
        labels = np.arange(20) % 100
        return (retrain.Compact.of(np.log(np.full((20, 100), 0.01, np.float32)), labels),
                {"format": retrain.RECORD_FORMAT, "config": config, "history": [{"train_loss": 1.0}], "val_acc": 0.5})

    timed = []
    monkeypatch.setattr(retrain, "train_final", fake_training)
    monkeypatch.setattr(retrain, "load_final_splits", lambda cfg: None)
    monkeypatch.setattr(timing_protocol, "measure_and_save", lambda *args: timed.append(1))
    out = run_dir / "analysis" / "predictions"
    timing = {"round_seconds": spec.timing_round_s, "rounds": spec.timing_rounds}  # the saved costs' protocol
    retrain.run_jobs(jobs, out, log=quiet, **timing)
    assert trained == [] and timed == []  # all saved, all of one format: reused as they are, costs too
    for suffix in (".npz", ".json"):
        (out / f"hierarchical_seed2{suffix}").unlink()
    lines = []
    retrain.run_jobs(jobs, out, log=lines.append, **timing)
    assert sorted(trained) == sorted((j.head, j.seed) for j in jobs)  # the 3 older ones with the missing one
    # The costs were timed on the older models' rows: measured again with the models that replace them.
    assert "final models: 0 cached, 4 to train; costs to measure" in lines and timed == [1]
    assert all(json.loads((out / f"{j.head}_seed{j.seed}.json").read_text())["format"] == retrain.RECORD_FORMAT
               for j in jobs)
    # Nothing missing but one model of the older format among new ones (an upgrade interrupted half-way): it is
    # trained again, never kept beside them.
    record_path = out / "softmax_seed1.json"
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()), "format": 4}))
    trained.clear()
    retrain.run_jobs(jobs, out, log=quiet, **timing)
    assert trained == [("softmax", 1)] and json.loads(record_path.read_text())["format"] == retrain.RECORD_FORMAT


@pytest.mark.parametrize("name,damage", [("softmax_seed1.npz", "truncated"), ("softmax_seed1.json", "truncated"),
                                         ("softmax_seed1.json", "a list")])
def test_a_damaged_saved_model_is_trained_again(name, damage, run_dir, no_training):
    """A saved final model that does not read back whole is not reused (nor a traceback): it is trained again."""
    path = run_dir / "analysis" / "predictions" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if damage == "truncated" else b"[1, 2]")
    with pytest.raises(TrainingCalled):
        analyse(run_dir, log=quiet)
