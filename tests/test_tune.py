"""The study command end to end on a tiny fake dataset: every head searched, logs readable, resumable, bad input."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from conftest import assert_one_line_error
from fake_cifar import write_fake_cifar100
from study.heads import list_heads
from study.tune import main as tune_main

REPO = Path(__file__).resolve().parent.parent
TUNE = [sys.executable, str(REPO / "study" / "tune.py")]


@pytest.fixture(scope="module")
def study_data(tmp_path_factory):
    # The smoke preset holds out 500 images and trains on 500 more: 12 per class is enough.
    return write_fake_cifar100(tmp_path_factory.mktemp("cifar"), train_per_class=12, test_per_class=2)


def tune(*args, timeout=900):
    return subprocess.run([*TUNE, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


# Heads of three families through the whole pipeline: the baseline, a sparse head that ranks classes by its own
# scores, and a head with tail clusters. Every head's search space is covered in-process
# (tests/test_search_spaces.py), every head's training in tests/test_train.py and tests/test_frozen.py, and the
# hierarchical head's pipeline by test_frozen_backbone_study_end_to_end: a search of every head here would add
# Ray's start-up of each search, not coverage.
SMOKE_HEADS = ["adaptive", "softmax", "sparsemax"]


@pytest.fixture(scope="module")
def smoke_run(study_data, tmp_path_factory, shared_ray):
    """The whole end-to-end pipeline (search, final models, timing, convergence check, report) on a Ray it joins
    (a study that starts its own Ray: test_diverging_trials_are_never_best_and_crashed_trials_are_retried)."""
    storage = tmp_path_factory.mktemp("runs")
    result = tune("--head", ",".join(SMOKE_HEADS), "--preset", "smoke", "--data-dir", str(study_data),
                  "--storage", str(storage), "--name", "smoke", "--address", shared_ray)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return storage / "smoke", result


def test_features_file_study_end_to_end(tmp_path, shared_ray, cli_error):
    """--data features:FILE: a heads-only study's search on a synthetic file with K = 12 and a hierarchy, through
    Ray's trials (every head's training on such files, final-model training included, is in-process in
    tests/test_features.py; the analysis of a features study in-process here). The file's SHA-256 is recorded, and a
    file changed since is refused by --resume and by the analysis, in one line."""
    import analysis.__main__ as analysis_command
    from study.files import save_arrays
    from study.sources.features import file_sha256
    from study.synthetic import generate

    path = tmp_path / "f12.npz"
    save_arrays(path, **generate(12, dim=8, train=360, test=120, branching=3))
    heads = ["softmax", "hierarchical"]
    result = tune("--head", ",".join(heads), "--preset", "smoke-frozen", "--data", f"features:{path}",
                  "--storage", str(tmp_path), "--name", "feat", "--address", shared_ray, "--no-analysis")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "feat"
    study = json.loads((run_dir / "study.json").read_text())
    assert study["train"]["data"]["source"] == f"features:{path}" and study["train"]["data"]["val_size"] is None
    assert study["frozen_features"] == f"sha256:{file_sha256(path)}"
    assert study["kind"].startswith(f"heads-only study on the feature vectors of features:{path} (12 classes)")
    assert "heads-only study on the file's features" in result.stdout and "frozen backbone" not in result.stdout
    for head in heads:
        for folder in (head, f"{head}-search2"):
            assert json.loads((run_dir / folder / "summary.json").read_text())["best"] is not None
    # The file changes: a resumed study and the analysis refuse to go on with other features.
    save_arrays(path, **generate(12, dim=8, train=360, test=120, branching=3, seed=1))
    for main, argv in ((tune_main, ["--resume", "--name", "feat", "--storage", str(tmp_path)]),
                       (analysis_command.main, [str(run_dir)])):
        assert_one_line_error(*cli_error(main, *argv), "the features file has changed since this run was tuned")


def test_frozen_backbone_study_end_to_end(study_data, tmp_path, shared_ray):
    """The default kind of study on a CPU, the whole pipeline (backbone, search, final models as Ray tasks, report)
    with two heads of different families, on the module's shared Ray, which it joins with --address (conftest.py:
    shared_ray); every head on frozen features is covered in tests/test_frozen.py, and a study that starts a Ray
    of its own by test_diverging_trials_are_never_best_and_crashed_trials_are_retried."""
    heads = ["softmax", "hierarchical"]
    result = tune("--head", ",".join(heads), "--preset", "smoke-frozen", "--data-dir", str(study_data),
                  "--storage", str(tmp_path), "--name", "frozen", "--address", shared_ray)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "frozen"
    study = json.loads((run_dir / "study.json").read_text())
    assert study["train"]["frozen"]["enabled"] and study["kind"].startswith("frozen-backbone study: tinyvgg-8")
    assert study["kind"] in result.stdout and "frozen backbone: training tinyvgg" in result.stdout
    key, _ = study["frozen_features"].split(":")
    out = run_dir / "analysis"
    report = (out / "summary.md").read_text()
    assert "**Study kind.** Frozen-backbone study: tinyvgg-8" in report
    # Two independent searches per head (the preset's), each with its own sampler seed, trial seed and final seed.
    assert study["searches"] == 2 and "Each head was tuned by 2 independent searches" in report
    best = json.loads((out / "best_configs.json").read_text())
    optuna_studies = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{run_dir / 'optuna.db'}")}
    for head in heads:
        for folder in (head, f"{head}-search2"):
            assert json.loads((run_dir / folder / "summary.json").read_text())["best"] is not None
            assert folder in optuna_studies
        assert [(s["search"], s["seeds"]) for s in best["heads"][head]] == [(1, [1]), (2, [2])]
        for seed in (1, 2):
            record = json.loads((out / "predictions" / f"{head}_seed{seed}.json").read_text())
            # Final models train on the same cached features as the trials, on the tuning split's rows of them.
            assert record["features_id"] == study["frozen_features"] and record["config"]["data"]["final"]
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert set(comparisons["unit"]) == {"search"} and set(comparisons["units"].dropna()) <= {2}
    assert sorted(set(pd.read_csv(out / "results.csv")["head"])) == sorted(heads)
    # The study's analysis trained its final models on the cache entry the study made (reuse: tests/test_frozen.py).
    assert "frozen backbone: reusing the cached features in" in result.stdout and key in result.stdout


def test_every_head_has_finished_trials_and_a_best_config(smoke_run):
    run_dir, result = smoke_run
    for head in SMOKE_HEADS:
        summary = json.loads((run_dir / head / "summary.json").read_text())
        assert sum(t["status"] == "ok" for t in summary["trials"]) >= 2, head
        assert summary["best"] is not None and "lr" in summary["best"]["params"], head
        assert 0.0 <= summary["best"]["last_val_acc"] <= 1.0
    assert "| head" in result.stdout and "best val_acc" in result.stdout  # the final table
    progress_headers = [line for line in result.stdout.splitlines() if line.startswith("| Trial name")]
    assert any("|   val_acc |" in line and "|       lr |" in line for line in progress_headers)  # Ray's progress table


def test_run_records_how_it_was_made(smoke_run):
    run_dir, _ = smoke_run
    study = json.loads((run_dir / "study.json").read_text())
    assert study["heads"] == SMOKE_HEADS and study["preset"] == "smoke" and study["num_samples"] == 2
    assert study["kind"].startswith("end-to-end study:") and study["frozen_features"] is None
    assert set(study["versions"]) >= {"python", "torch", "ray", "optuna"}
    assert study["command"].startswith(f"python study/tune.py --head {','.join(SMOKE_HEADS)} --preset smoke")


def test_optuna_storage_opens_with_every_head(smoke_run):
    run_dir, _ = smoke_run
    storage = f"sqlite:///{run_dir / 'optuna.db'}"
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    assert names == set(SMOKE_HEADS)
    trials = optuna.load_study(study_name="softmax", storage=storage).trials
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 2
    assert set(trials[0].params) == {"lr", "weight_decay"}  # label smoothing is searched for no head


def test_tensorboard_event_files_load(smoke_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = smoke_run
    events = sorted((run_dir / "trials").glob("*_trial_*/events.out.tfevents.*"))  # the search phase's trials
    assert len(events) >= 2 * len(SMOKE_HEADS)
    accumulator = EventAccumulator(str(events[0].parent)).Reload()
    assert any(tag.endswith("val_acc") for tag in accumulator.Tags()["scalars"])


def recorded_finished(experiment: Path) -> set:
    """Folders of the trials that the saved experiment state (what --resume continues from) records as finished."""
    from ray import tune as ray_tune

    try:
        trials = ray_tune.ExperimentAnalysis(str(experiment)).trials
    except Exception:  # not written yet, or caught mid-write
        return set()
    return {Path(t.path) for t in trials if t.status == "TERMINATED"}


def test_killed_run_resumes_without_redoing_finished_trials(study_data, tmp_path, shared_ray):
    """kill -9 of the study mid-search (no chance to clean up), then --resume: finished trials are kept. Ray ends
    the trials of a driver that died."""
    args = ["--head", "taylor", "--preset", "smoke", "--num-samples", "6", "--epochs", "2",
            "--data-dir", str(study_data), "--storage", str(tmp_path), "--name", "killed", "--address", shared_ray]
    # Its own session, so that the test can also clear away any Ray process the killed driver leaves behind.
    process = subprocess.Popen([*TUNE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                               start_new_session=True)
    run_dir = tmp_path / "killed"
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if recorded_finished(run_dir / "trials"):
            break
        time.sleep(0.5)
    assert process.poll() is None, "the study ended before it could be killed"
    process.kill()  # SIGKILL
    process.wait(timeout=60)
    time.sleep(2)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert process.returncode == -signal.SIGKILL
    finished = recorded_finished(run_dir / "trials")  # the search phase's experiment
    assert finished and len(finished) < 6 and not (run_dir / "taylor" / "summary.json").exists()
    history = {folder: (folder / "progress.csv").read_text() for folder in finished}
    # A kill can also come in the second between Ray deleting a trial's checkpoint for its next one and saving the
    # state that names the next one (study/search/lost_checkpoints.py): the unfinished trials' checkpoints are
    # deleted here, and the resume must train those trials again from their start, not fail them.
    for checkpoint in (run_dir / "trials").glob("*/checkpoint_*"):
        if checkpoint.parent not in finished:
            shutil.rmtree(checkpoint)

    result = tune("--resume", "--name", "killed", "--storage", str(tmp_path), "--no-analysis", "--address", shared_ray)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((run_dir / "taylor" / "summary.json").read_text())
    assert len(summary["trials"]) == 6
    for folder, text in history.items():  # finished trials were kept, not trained again
        assert (folder / "progress.csv").read_text() == text
    # Optuna agrees with Ray: one finished Optuna trial per Ray trial; any configuration handed out just before
    # the kill that Ray never ran is marked FAIL rather than left RUNNING.
    trials = optuna.load_study(study_name="taylor", storage=f"sqlite:///{run_dir / 'optuna.db'}").trials
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    # A trial that ended in the second before the kill is in optuna.db but not in Ray's last snapshot: Ray trains it
    # again, and Optuna records that run too (README, Interrupting and resuming). Never more than the trials that
    # were running at the kill (at most 1 here: one CPU).
    assert 6 <= states.count(optuna.trial.TrialState.COMPLETE) <= 7
    assert len(summary["optuna_orphans_failed"]) == states.count(optuna.trial.TrialState.FAIL)


@pytest.mark.parametrize("args,message", [
    (["--head", "bogus"], "unknown head 'bogus'; choose from: all, adaptive"),
    # Refused once Ray has started: the run directory made for it must not stay behind.
    (["--cpus-per-trial", "99"], "--cpus-per-trial 99 asks for more than the"),
])
def test_bad_input_in_a_real_process(args, message, study_data, tmp_path):
    storage = tmp_path / "runs"
    result = tune("--preset", "smoke", "--data-dir", str(study_data), "--storage", str(storage), *args, timeout=300)
    assert_one_line_error(result.returncode, result.stderr, message)
    assert not storage.exists()  # nothing was left of a run that never began


FIXTURE_STUDY = Path(__file__).parent / "fixtures" / "tiny_run" / "study.json"


def write_study(folder: Path, heads) -> None:
    """A complete study.json (the fixture run's) made with these heads."""
    folder.mkdir(parents=True)
    (folder / "study.json").write_text(json.dumps({**json.loads(FIXTURE_STUDY.read_text()), "heads": heads}))


def test_resume_without_a_name_takes_the_latest_run(tmp_path, cli_error):
    for name, heads in (("older", ["taylor"]), ("newer", ["softmax"])):
        write_study(tmp_path / name, heads)
        time.sleep(0.05)  # distinct modification times
    code, stderr = cli_error(tune_main, "--resume", "--head", "gumbel", "--storage", str(tmp_path))
    assert_one_line_error(code, stderr, "run newer was made with --head softmax, not gumbel")


def test_resume_with_nothing_to_resume_is_one_line(tmp_path, cli_error):
    code, stderr = cli_error(tune_main, "--resume", "--storage", str(tmp_path))
    assert_one_line_error(code, stderr, "no run to resume in")


def test_a_run_that_exists_is_not_overwritten(tmp_path, cli_error):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "study.json").write_text("{}")
    code, stderr = cli_error(tune_main, "--head", "softmax", "--preset", "smoke", "--storage", str(tmp_path),
                             "--name", "taken")
    assert_one_line_error(code, stderr, "already exists; pass --resume to continue it")
    assert (tmp_path / "taken" / "study.json").read_text() == "{}"


def test_study_ends_with_the_analysis_and_a_rerun_reuses_it(smoke_run):
    from test_analysis import check_outputs_consistent

    run_dir, result = smoke_run
    assert "# softmax-study results" in result.stdout  # tune.py ran the analysis at the end
    study = json.loads((run_dir / "study.json").read_text())
    epochs = str(study["train"]["optim"]["epochs"])
    rerun = subprocess.run([sys.executable, "-m", "analysis", str(run_dir), "--seeds", "2", "--epochs", epochs],
                           capture_output=True, text=True, timeout=600, cwd=REPO)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"final models: {2 * len(SMOKE_HEADS)} cached, 0 to train" in rerun.stdout
    out = run_dir / "analysis"
    check_outputs_consistent(out, seeds=2)
    results = pd.read_csv(out / "results.csv")
    assert sorted(set(results["head"])) == SMOKE_HEADS and len(results) == 2 * len(SMOKE_HEADS)
    assert sorted(set(results["seed"])) == [1, 2]  # never the tuning seed (0)
    report = (out / "summary.md").read_text()
    assert f"**Study kind.** {study['kind'][0].upper()}{study['kind'][1:]}" in report
    # Smoke-sized models sit near chance: the study must not call any head better or worse than softmax.
    verdicts = set(pd.read_csv(out / "comparisons.csv")["verdict"])
    assert not verdicts & {"better than softmax", "worse than softmax"}, verdicts


def test_diverging_trials_are_never_best_and_crashed_trials_are_retried(study_data, tmp_path):
    env = {**os.environ, "SOFTMAX_STUDY_PLUGINS": "faulty_heads", "FAULTY_HEADS_MARKERS": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests" / "plugins"), os.environ.get("PYTHONPATH")]))}
    # The search only: the analysis of a head without a usable trial is tested on the fixture run
    # (tests/test_analysis.py::test_head_whose_trials_all_failed_is_reported).
    result = subprocess.run([*TUNE, "--head", "test_nan,test_crash_once,test_killed_once", "--preset", "smoke",
                             "--epochs", "2", "--data-dir", str(study_data), "--storage", str(tmp_path), "--name",
                             "faults", "--no-analysis"],
                            capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "faults"
    nan = json.loads((run_dir / "test_nan" / "summary.json").read_text())
    assert [t["status"] for t in nan["trials"]] == ["diverged", "diverged"] and nan["best"] is None
    assert all("training loss became nan at epoch 1" in t["error"] for t in nan["trials"])
    crash = json.loads((run_dir / "test_crash_once" / "summary.json").read_text())
    assert [t["status"] for t in crash["trials"]] == ["ok", "ok"] and crash["best"] is not None
    assert (tmp_path / "crashed").exists()  # the crash did happen, and the retry recovered from it
    # A trial worker killed with SIGKILL in its second epoch: restarted from its checkpoint of epoch 1, so its
    # record holds epochs 1 and 2 once each (a restart from scratch would report epoch 1 twice). ASHA may stop the
    # other trial after epoch 1.
    killed = json.loads((run_dir / "test_killed_once" / "summary.json").read_text())
    assert (tmp_path / "killed").exists() and [t["status"] for t in killed["trials"]] == ["ok", "ok"]
    curves = [pd.read_csv(Path(t["path"]) / "progress.csv")["epoch"].tolist() for t in killed["trials"]]
    assert [1, 2] in curves and all(c in ([1], [1, 2]) for c in curves), curves



def test_same_seed_same_configs_metrics_and_asha_decisions(study_data, tmp_path, shared_ray):
    """The same seed samples the same configs with, on the CPU, the same metrics; with --max-concurrent 1, which
    trials ASHA stops no longer depends on which trial reports first, so the whole search repeats exactly."""
    def run(name):
        result = tune("--head", "softmax", "--preset", "smoke", "--epochs", "2", "--num-samples", "4",
                      "--max-concurrent", "1", "--data-dir", str(study_data), "--storage", str(tmp_path),
                      "--name", name, "--no-analysis", "--address", shared_ray)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads((tmp_path / name / "softmax" / "summary.json").read_text())
        assert summary["peak_concurrent_trials"] == 1
        return [(json.dumps(t["params"], sort_keys=True), t["epochs"], t["last_val_acc"]) for t in summary["trials"]]

    first = run("first")
    assert any(epochs == 1 for _, epochs, _ in first) and any(epochs == 2 for _, epochs, _ in first)  # ASHA acted
    assert sorted(run("second")) == sorted(first)

def test_optuna_trials_left_running_by_a_killed_run_are_marked_failed(tmp_path):
    """The state a kill -9 can leave: Optuna handed out a configuration that Ray's last snapshot never recorded."""
    from study.search.rundir import RunDir
    from study.search.tuner import fail_orphaned_optuna_trials

    run = RunDir(tmp_path)
    study = optuna.create_study(study_name="softmax", storage=run.optuna_url, direction="maximize")
    study.tell(study.ask(), 0.5)
    study.ask()  # never told: RUNNING
    assert fail_orphaned_optuna_trials("softmax", run) == [1]
    states = [t.state for t in optuna.load_study(study_name="softmax", storage=run.optuna_url).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert fail_orphaned_optuna_trials("softmax", run) == []  # nothing more to do the second time


def test_concurrency_fits_the_resources_and_the_cap():
    from study.search.cluster import concurrency
    from study.search.spec import StudySpec

    spec = StudySpec(name="r", heads=("softmax",), preset="full", num_samples=16, cpus_per_trial=2,
                     gpus_per_trial=0.25)
    assert concurrency(spec, {"CPU": 16, "GPU": 1}) == 4  # a quarter GPU each
    assert concurrency(spec, {"CPU": 6, "GPU": 1}) == 3  # CPUs run out first
    assert concurrency(dataclasses.replace(spec, max_concurrent=1), {"CPU": 16, "GPU": 1}) == 1
    assert concurrency(dataclasses.replace(spec, num_samples=2), {"CPU": 16, "GPU": 1}) == 2


def test_without_an_address_a_run_starts_its_own_ray(monkeypatch):
    """ray.init() left to itself joins any Ray already running on the machine (the last `ray start`, $RAY_ADDRESS),
    whose workers may run other code: that is how a test's run once joined a cluster another test had started. A run
    without --address asks Ray for a local instance of its own; --address is passed on as given."""
    import ray

    from study.search import cluster

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs["address"]))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2})
    monkeypatch.setattr("study.cli.handle_stop_signals", lambda: None)  # not pytest's own signal handlers
    for address in (None, "auto", "10.0.0.5:6379"):
        assert cluster.connect_ray(address) == {"CPU": 2}
    assert calls == ["local", "auto", "10.0.0.5:6379"]


def test_ray_address_from_the_environment(monkeypatch):
    """Without --address, $RAY_ADDRESS (what `ray job submit` sets) is the cluster to join; unset, a run starts its
    own Ray; malformed, one line."""
    from study.errors import ConfigError
    from study.search.cluster import default_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert default_address() is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert default_address() == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "nohost")
    with pytest.raises(ConfigError, match="^\\$RAY_ADDRESS: malformed address 'nohost': expected 'auto' or host:port"):
        default_address()


def test_every_flag_is_either_defining_or_allowed_with_resume():
    """A flag that changes what a study is must be refused with --resume (else the resumed run would silently ignore
    it); a new flag of study/tune.py has to be put in one of the two lists."""
    from study.search.from_args import DEFINING_FLAGS, RESUMABLE_FLAGS

    parser = __import__("study.tune", fromlist=["build_parser"]).build_parser()
    flags = {action.dest for action in parser._actions if action.dest != "help"}
    assert not set(DEFINING_FLAGS) & set(RESUMABLE_FLAGS)
    assert set(DEFINING_FLAGS) | set(RESUMABLE_FLAGS) == flags


def test_the_spec_reads_back_what_it_writes():
    """study.json's checked keys are exactly the spec's fields, so a field added to StudySpec cannot be written
    without being read back (and checked)."""
    import dataclasses

    from study.presets import PRESETS
    from study.search.spec import OPTIONAL, REQUIRED, DryRun, StudySpec

    assert set(REQUIRED) | set(OPTIONAL) == {f.name for f in dataclasses.fields(StudySpec)}
    spec = StudySpec(name="r", heads=("softmax", "taylor"), preset="full", train=PRESETS["full"].train,
                     num_samples=16, searches=4, gpus_per_trial=0.25, cpus_per_trial=2, dry_run=DryRun(1.0, 8),
                     versions={"ray": "2.60.0"}, git_commit="abc")
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_new_study_records_its_git_commit():
    """study.json's provenance: the commit of the code that ran (a broken call here once failed every new study)."""
    import re

    from study.search.from_args import git_commit

    assert re.fullmatch(r"[0-9a-f]{40}", git_commit() or ""), git_commit()


def test_a_grace_period_longer_than_the_epochs_is_shortened_and_said(tmp_path):
    """The frozen preset's ASHA grace period (12 epochs) with --epochs 2: the spec holds 2, and the run says why."""
    from study.search.from_args import spec_from_args
    from study.search.run import asha_line
    from study.tune import build_parser

    argv = ["--preset", "frozen", "--epochs", "2", "--storage", str(tmp_path), "--name", "g"]
    spec, _ = spec_from_args(build_parser().parse_args(argv), argv, gpu_visible=False)
    assert spec.grace_period == 2
    assert asha_line(spec) == ("ASHA: every trial trains 2 epoch(s) before it may be stopped (the frozen preset's 12, "
                               "shortened to the 2 epochs a trial has); at each rung the best 1/3 go on, up to 2 "
                               "epochs")
    argv = ["--preset", "frozen", "--storage", str(tmp_path), "--name", "h"]
    spec, _ = spec_from_args(build_parser().parse_args(argv), argv, gpu_visible=False)
    assert spec.grace_period == 12 and "shortened" not in asha_line(spec)


def test_head_all_searches_every_registered_head_in_order(tmp_path):
    from study.search.from_args import spec_from_args
    from study.tune import build_parser

    for argv in (["--head", "all"], []):  # all is the default
        argv += ["--preset", "smoke", "--storage", str(tmp_path), "--name", "a"]
        spec, _ = spec_from_args(build_parser().parse_args(argv), argv, gpu_visible=False)
        assert list(spec.heads) == list_heads() and len(list_heads()) >= 9


def test_searches_have_their_own_seeds_and_the_first_is_a_single_search_run():
    """Each search samples and trains with its own seeds, its final models with seeds no trial used; the first
    search is named and seeded as single-search runs were, so their folders and final models are reused."""
    from study.search.searches import SearchId, final_seeds, sampler_seed, search_ids, trial_seed

    assert [w.name for w in search_ids("softmax", 3)] == ["softmax", "softmax-search2", "softmax-search3"]
    assert SearchId("taylor", 1).label == "taylor search 2"
    assert (sampler_seed(7, 0), trial_seed(7, 0), final_seeds(7, 0, 5)) == (7, 7, [8, 9, 10, 11, 12])
    for seed in (0, 7, 2 ** 32 - 2):
        finals = [s for r in range(4) for s in final_seeds(seed, r, 2)]
        trials = [trial_seed(seed, r) for r in range(4)]
        assert len(set(finals)) == 8 and not set(finals) & set(trials) and len(set(trials)) == 4
        assert len({sampler_seed(seed, r) for r in range(4)}) == 4
        assert all(0 <= s < 2 ** 32 for s in finals + trials)


def test_the_frozen_preset_splits_its_trials_over_four_searches(tmp_path):
    from study.search.from_args import spec_from_args
    from study.search.run import searches_text
    from study.tune import build_parser

    argv = ["--preset", "frozen", "--storage", str(tmp_path), "--name", "s"]
    spec, _ = spec_from_args(build_parser().parse_args(argv), argv, gpu_visible=False)
    assert (spec.num_samples, spec.searches, spec.trials_per_search, spec.final_seeds) == (16, 4, 4, 1)
    assert searches_text(spec) == "4 independent searches of 4 trials"
    argv += ["--searches", "1", "--num-samples", "6"]
    spec, _ = spec_from_args(build_parser().parse_args(argv), argv, gpu_visible=False)
    assert (spec.searches, spec.trials_per_search) == (1, 6) and searches_text(spec) == "6 trials"
