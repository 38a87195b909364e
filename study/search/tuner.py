"""Running the study's searches: each a seeded Optuna TPE searcher and an ASHA scheduler on val_acc.

A head has spec.searches of them, each with its own seeds (study/search/searches.py). They run together in one Ray
Tune run, the search phase (study/search/phase.py); a search that a run made before had started in a Ray Tune run
of its own (runs/<name>/<search>/ holds its experiment state) is resumed in that run. What they write where:
study/search/rundir.py. What a finished search reports: study/search/trials.py.
"""
import logging
import os
import time
from dataclasses import dataclass

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from search_spaces import space_for
from study.cli import end_worker_output
from study.errors import Interrupted
from study.search.gpu_monitor import GpuMonitor
from study.search.rundir import RunDir, trial_name
from study.search.phase import new_phase_tuner, restore_last_good_state, search_of
from study.search.searches import SearchId, sampler_seed, search_ids, trial_seed
from study.search.spec import StudySpec
from study.search.trainable import SEARCH_KEY, train_trial
from study.search.trials import METRIC, MODE, summarise
from study.search.write_failures import storage_refuses, write_failure

PROGRESS_METRICS = ["epoch", "val_acc", "val_loss", "train_loss", "epoch_time_s"]
TUNE_SETTINGS = {
    # Ray's newer console output picks its own columns (not val_acc, nor Optuna's parameters); the classic
    # reporter shows the ones we name.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Short trials checkpoint often; Ray's warning about frequent experiment snapshots is expected noise here.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Seconds between snapshots of the experiment state (trial statuses, searcher) that --resume continues from.
    # Ray's "auto" waits at least 10 s, so after a kill -9 a trial that finished in those 10 s would be trained
    # again; a snapshot of a few dozen trials takes milliseconds, so take one every second.
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
}


@dataclass(frozen=True)
class Search:
    """One study's searches: the spec, where they go, and how this process runs them."""
    spec: StudySpec
    run: RunDir
    max_concurrent: int  # trials at a time (study/search/cluster.py: concurrency)
    monitor_gpu: bool = False  # sample this machine's GPUs while searching (local runs with GPU trials)


class _NameRecorder:
    """Stands in for an Optuna trial to list a space's parameter names (first branch of conditional ones)."""

    def __init__(self):
        self.names = []

    def suggest_float(self, name, low, high, **_):
        self.names.append(name)
        return low

    def suggest_int(self, name, low, high, **_):
        self.names.append(name)
        return low

    def suggest_categorical(self, name, choices):
        self.names.append(name)
        return choices[0]


def space_parameters(head: str, class_info):
    recorder = _NameRecorder()
    space_for(head, class_info)(recorder)
    return recorder.names


def base_config(spec: StudySpec, which: SearchId):
    """Where every trial of a search starts: its head's configuration with the search's trial seed."""
    return spec.head_config(which.head).replace(**{"run.seed": trial_seed(spec.seed, which.index)})


def build_trainable(search: Search, splits, which: SearchId = None):
    """The trial function with what every trial shares bound to it: the data once per study and each search's
    base configuration (never through the config, which carries only the search space's values and the search's
    name). With `which`, for a Ray Tune run of that one search."""
    spec = search.spec
    if which is not None:
        bound = {"base": base_config(spec, which)}
    else:  # every search of the study: a restored search phase may hold any of them
        every = [w for head in spec.heads for w in search_ids(head, spec.searches)]
        bound = {"bases": {w.name: base_config(spec, w) for w in every}}
    trainable = tune.with_parameters(train_trial, splits=splits, checkpoint_every=spec.checkpoint_every, **bound)
    return tune.with_resources(trainable, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})


def progress_reporter(parameters) -> tune.CLIReporter:
    return tune.CLIReporter(metric_columns=PROGRESS_METRICS, parameter_columns=list(parameters), metric=METRIC,
                            mode=MODE, sort_by_metric=True, max_report_frequency=30, max_progress_rows=40)


def new_tuner(which: SearchId, search: Search, trainable, class_info) -> tune.Tuner:
    """A Ray Tune run of one search (how runs made before the search phase ran each search; kept to resume them)."""
    spec, head = search.spec, which.head
    epochs = spec.train.optim.epochs
    # metric/mode go to the searcher and scheduler themselves: a define-by-run OptunaSearch does not get them from
    # TuneConfig and fails at its first suggestion.
    searcher = OptunaSearch(
        space=space_for(head, class_info), metric=METRIC, mode=MODE, seed=sampler_seed(spec.seed, which.index),
        study_name=which.name,
        storage=optuna.storages.RDBStorage(search.run.optuna_url),
    )
    scheduler = ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=MODE, max_t=epochs,
                              # min(): runs whose study.json predates the shortened grace period in the spec
                              grace_period=min(spec.grace_period, epochs), reduction_factor=spec.reduction_factor)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=spec.trials_per_search,
                                    max_concurrent_trials=search.max_concurrent, reuse_actors=True,
                                    trial_name_creator=ray_trial_name, trial_dirname_creator=ray_trial_name),
        run_config=tune.RunConfig(
            name=which.name, storage_path=str(search.run.path),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=2),  # a crashed trial restarts from its checkpoint
            verbose=1, progress_reporter=progress_reporter(space_parameters(head, class_info)),
        ),
    )


def ray_trial_name(trial) -> str:
    return trial_name(trial.trial_id)


def search_head(which: SearchId, search: Search, splits) -> dict:
    """Resume one search in the Ray Tune run of its own that a run made before started; returns and saves its
    summary."""
    return guarded(search.run, lambda: run_search(which, search, splits))


def search_phase(ids, search: Search, splits) -> dict:
    """Run (or resume) the search phase of the searches `ids`; returns and saves their summaries by name."""
    return guarded(search.run, lambda: run_phase(ids, search, splits))


def guarded(run: RunDir, work):
    """work(), with Ray Tune's warnings held back while it runs. A write that the storage refused, in whatever shape
    Ray or Optuna raised it, becomes one OSError naming the file (study/search/write_failures.py)."""
    held, failure = HeldTuneErrors(), None
    try:
        with held:
            return work()
    except Exception as error:
        # Ray may also fail on what a full disk left behind (an EOFError reading a trial's truncated error file)
        # without naming the cause: a storage that refuses a probe write is then the cause.
        failure = write_failure(error, run.path, run.optuna_db) or storage_refuses(run.path)
        if failure is None:
            raise
        # Trials cut short by this stop fail on the same storage; Ray would print each one's traceback as an
        # "unhandled error" when this process exits. The one line that says what happened is the failure's.
        os.environ["RAY_IGNORE_UNHANDLED_ERRORS"] = "1"
        end_worker_output()  # nor their dying words as Ray stops them
        raise failure from None
    finally:
        if failure is None:  # the tracebacks of trials that failed for another reason are the user's to read
            held.replay()


class HeldTuneErrors(logging.Filter):
    """Ray Tune's and Ray Train's warnings and errors during a search (a failed trial's traceback, "Trials did not
    complete", a checkpoint sync that failed), held back from Ray's log handlers until the search ends: printed
    then, unless the search ended on a write failure, whose one line says what happened (the held tracebacks are
    that same failure, trial by trial). Ray's progress table still shows errored trials as they happen."""

    def __init__(self):
        super().__init__()
        self.records, self.handlers = {}, []

    def filter(self, record) -> bool:
        if record.levelno >= logging.WARNING and record.name.startswith(("ray.tune", "ray.train")):
            self.records.setdefault(id(record), record)  # one record reaches every handler: keep it once
            return False
        return True

    def __enter__(self):
        self.handlers = logging.getLogger("ray").handlers + logging.getLogger().handlers
        for handler in self.handlers:
            handler.addFilter(self)
        return self

    def __exit__(self, *exc):
        for handler in self.handlers:
            handler.removeFilter(self)
        return False

    def replay(self) -> None:
        for record in self.records.values():
            logging.getLogger(record.name).handle(record)
        self.records.clear()


def run_search(which: SearchId, search: Search, splits) -> dict:
    set_tune_settings()
    run, spec, head = search.run, search.spec, which.head
    experiment = run.head_dir(which.name)
    trainable = build_trainable(search, splits, which)
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
    else:
        tuner = new_tuner(which, search, trainable, splits.class_info)
    started = time.time()
    experiment.mkdir(parents=True, exist_ok=True)
    with GpuMonitor(run.gpu_file(which.name), enabled=search.monitor_gpu) as gpu:
        grid = tuner.fit()
    raise_write_failures(grid, run, experiment)
    trials = spec.trials_per_search
    if not search_finished(experiment, trials):  # after Ctrl-C, Ray returns normally
        searched = f"search {which.index + 1} of head '{head}'" if spec.searches > 1 else f"search of head '{head}'"
        raise Interrupted(f"the {searched} stopped before all {trials} trials ended")
    return save_summary(which, list(grid), search, time.time() - started, gpu.summary())


def run_phase(ids, search: Search, splits) -> dict:
    """The search phase (study/search/phase.py): every search in `ids` in one Ray Tune run in the run's trials/ folder,
    or the one an earlier start left there, restored. Saves each search's summary as soon as the run ends, also
    when it was interrupted, so that finished searches are kept; returns {search name: summary}."""
    set_tune_settings()
    run, spec = search.run, search.spec
    trainable = build_trainable(search, splits)
    if tune.Tuner.can_restore(str(run.phase_dir)):
        if restore_last_good_state(run.phase_dir):
            print(f"Ray Tune's saved state in {run.phase_dir} did not read (cut short by a full disk?): resuming from "
                  "the last complete copy of it; trials that ended after it are trained again", flush=True)
        tuner = tune.Tuner.restore(str(run.phase_dir), trainable=trainable, resume_errored=True)
    else:
        # The parameters every head samples: a head's own knobs are in its summary and the report.
        info = splits.class_info
        shared = [name for name in space_parameters(ids[0].head, info)
                  if all(name in space_parameters(w.head, info) for w in ids)]
        tuner = new_phase_tuner(ids, search, trainable, progress_reporter([SEARCH_KEY, *shared]), info)
    with GpuMonitor(run.phase_gpu_file, enabled=search.monitor_gpu) as gpu:
        grid = tuner.fit()
    raise_write_failures(grid, run, run.phase_dir)
    results = {}
    for result in grid:
        results.setdefault(search_of(result), []).append(result)
    ended = finished_searches(run.phase_dir, spec.trials_per_search)
    known = {w.name: w for head in spec.heads for w in search_ids(head, spec.searches)}
    summaries = {}
    for name, found in results.items():
        if name in ended and name in known and not run.has_summary(name):
            summaries[name] = save_summary(known[name], found, search, trials_span(found), gpu.summary())
    stopped = [w.label if spec.searches > 1 else w.head for w in ids if w.name not in ended]
    if stopped:  # after Ctrl-C, Ray returns normally
        raise Interrupted(f"the search phase stopped before every trial of {', '.join(stopped)} ended")
    return summaries


def set_tune_settings() -> None:
    for key, value in TUNE_SETTINGS.items():
        os.environ.setdefault(key, value)  # read by Tune when the search runs; a user's own setting wins


def raise_write_failures(grid, run: RunDir, experiment) -> None:
    """A trial that could not write its files ends in error: resumed, never counted; the failure ends the run."""
    errors = [result.error for result in grid if result.error]
    for error in errors:
        failure = write_failure(error, run.path, run.optuna_db)
        if failure is not None:
            raise failure
    failure = storage_refuses(experiment) if errors else None  # errors that name no cause (Ray cancelled them)
    if failure is not None:
        raise failure


def trials_span(results) -> float:
    """Seconds from a search's first trial start to its last trial's last report (searches of the phase overlap:
    this is the search's own share of it)."""
    started = [t for r in results if (t := (r.metrics or {}).get("trial_started_at")) is not None]
    ended = [t for r in results if (t := (r.metrics or {}).get("reported_at")) is not None]
    return max(ended) - min(started) if started and ended else 0.0


def save_summary(which: SearchId, results, search: Search, wall_s: float, gpu) -> dict:
    run = search.run
    summary = summarise(which.head, results, wall_s)
    summary["search"] = which.index
    summary["gpu"] = gpu
    summary["optuna_orphans_failed"] = orphans = fail_orphaned_optuna_trials(which.name, run)
    if orphans:
        print(f"{which.name}: Optuna trial(s) {orphans} were handed out just before an earlier run was killed and "
              f"never ran; marked FAIL", flush=True)
    run.write_summary(which.name, summary)
    return summary


def fail_orphaned_optuna_trials(study_name: str, run: RunDir) -> list:
    """Mark as FAIL the Optuna trials still RUNNING once every Ray trial has ended; returns their numbers.

    A process killed outright (kill -9, power loss) between Optuna handing out a configuration and Ray's next
    snapshot of its searcher leaves that Optuna trial RUNNING with no Ray trial behind it; the resumed search asks
    for a new one instead. Left RUNNING, the Optuna study would count a trial that Ray never ran.
    """
    study = optuna.load_study(study_name=study_name, storage=run.optuna_url)
    orphans = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for number in orphans:
        study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return orphans


def saved_trials(experiment) -> list:
    """The trials of the saved experiment state, which is what --resume continues from. (The in-memory result
    grid marks trials that Ctrl-C cut short as terminated.)"""
    # Trials cut before their first result have no metrics yet; Ray warns about each, which says nothing here.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return tune.ExperimentAnalysis(str(experiment)).trials
    finally:
        quiet.setLevel(level)


def ended(trial) -> bool:
    return trial.status in ("TERMINATED", "ERROR")


def search_finished(experiment, num_samples: int) -> bool:
    """Whether a Ray Tune run of one search has run all its trials to their end."""
    trials = saved_trials(experiment)
    return len(trials) >= num_samples and all(ended(t) for t in trials)


def finished_searches(experiment, trials_per_search: int) -> set:
    """The searches of a search phase whose every trial has run to its end."""
    by_search = {}
    for trial in saved_trials(experiment):
        by_search.setdefault(trial.config.get(SEARCH_KEY), []).append(trial)
    return {name for name, trials in by_search.items()
            if len(trials) >= trials_per_search and all(ended(t) for t in trials)}
