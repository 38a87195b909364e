"""The study's search phase: every search that has not finished, of every head, in one Ray Tune run.

Why one run rather than one per search: each Ray Tune run starts trial processes of its own (Python, torch and
this project: seconds of CPU each) and then waits for its slowest trial while cores idle; in one run the same
trial processes train every search's trials (reuse_actors), one after another, with no idle tail between
searches: the search of three heads under the default preset took half the time (BENCHMARKS.md, "The search
phase").

The searches stay independent, as the verdicts need (study/search/searches.py): each has its own Optuna sampler
and study (its seed, its name), its own ASHA (a rung compares a search's trials with each other only) and its own
trial seed, and gets exactly `trials_per_search` trials. Trials are handed out search by search, in the study's
order. Each trial carries its search's name in Ray Tune's config (SEARCH_KEY): the searcher and the scheduler route
its results by it, the trainable takes its search's base configuration by it, and its folder in the run's Ray Tune
experiment, runs/<name>/trials/, is <search>_trial_<id> (Ray Tune wants one flat folder per trial). The experiment
also holds Ray Tune's state for --resume (tuner.pkl, experiment_state-*.json, the searcher's state).
"""
import json
import pickle
import shutil
from pathlib import Path

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search_spaces import space_for
from study.errors import StudyError
from study.search.lost_checkpoints import RestartLostCheckpoints
from study.search.rundir import PHASE_FOLDER, phase_trial_folder, trial_name
from study.search.searches import sampler_seed
from study.search.trainable import SEARCH_KEY
from study.search.trials import METRIC, MODE


class SearchesSearcher(Searcher):
    """Several independent searches behind the one searcher a Ray Tune run takes: each new trial goes to the first
    search (in the study's order) that has not had its trials yet, and each trial's results to its own search."""

    def __init__(self, searchers: dict, trials_per_search: int):
        super().__init__(metric=METRIC, mode=MODE)
        self.searchers = searchers  # {search name: its OptunaSearch}, in the order trials are handed out
        self.trials_per_search = trials_per_search
        self.handed_out = dict.fromkeys(searchers, 0)
        self.owner = {}  # Ray trial id -> search name

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # every search was built with the study's metric, mode and space

    def suggest(self, trial_id: str):
        for name, searcher in self.searchers.items():
            if self.handed_out[name] < self.trials_per_search:
                config = searcher.suggest(trial_id)
                if config is None or config == Searcher.FINISHED:  # not from Optuna with a space: nothing to add
                    return config
                self.handed_out[name] += 1
                self.owner[trial_id] = name
                return {**config, SEARCH_KEY: name}
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    # What --resume restores: each search's sampler state (as OptunaSearch saves its own) and who had which trial.
    def save(self, checkpoint_path: str) -> None:
        state = {"handed_out": self.handed_out, "owner": self.owner,
                 "searchers": {name: searcher.__dict__.copy() for name, searcher in self.searchers.items()}}
        with open(checkpoint_path, "wb") as out:
            pickle.dump(state, out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as saved:
            state = pickle.load(saved)  # noqa: S301 - Ray Tune's own searcher state, as OptunaSearch restores its
        self.handed_out, self.owner = state["handed_out"], state["owner"]
        for name, searcher_state in state["searchers"].items():
            self.searchers[name].__dict__.update(searcher_state)


class AshaPerSearch(FIFOScheduler):
    """One ASHA per search behind the one scheduler a Ray Tune run takes: a trial's results reach only its own
    search's ASHA, so its rungs compare the trials of that search and no other. Trials start in the order they
    were created (FIFO), as under one ASHA."""

    def __init__(self, schedulers: dict):
        super().__init__()
        self.schedulers = schedulers  # {search name: its ASHAScheduler}
        self._metric, self._mode = METRIC, MODE

    def _of(self, trial):
        return self.schedulers[search_of(trial)]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # every ASHA was built with the study's metric and mode

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"ASHA per search ({len(self.schedulers)} searches); ranked trials: {METRIC} ({MODE})"


# Ray Tune's own state of a run, what Tuner.restore reads: the trials', the trial generator's and the searcher's.
STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")
LAST_GOOD = "last-good"  # the folder of the kept copies, in the phase's experiment


class KeepLastGoodState(tune.Callback):
    """Ray Tune snapshots its state every second into a staging folder on this machine and then copies it into the
    run, overwriting the copy before: a full disk can cut that copy short and leave a state that no longer reads,
    which --resume could not restore. After each new snapshot, this keeps a copy of it from the staging folder
    (written there whole, by this same process) in runs/NAME/trials/last-good/: two slots and a small pointer file
    replaced whole, so a copy cut short by a full disk leaves the slot before it in place
    (restore_last_good_state puts it back)."""

    def __init__(self, phase_dir):
        self.phase_dir = str(phase_dir)
        self.copied = None  # the newest snapshot's modification time when it was last kept

    def on_step_end(self, iteration, trials, **info) -> None:
        if not trials:
            return
        staging = Path(trials[0].storage.experiment_driver_staging_path)
        states = sorted(staging.glob(STATE_FILES[0]))
        if not states or states[-1].stat().st_mtime_ns == self.copied:
            return
        stamp = states[-1].stat().st_mtime_ns
        kept = Path(self.phase_dir) / LAST_GOOD
        pointer = kept / "slot"
        slot = "b" if pointer.is_file() and pointer.read_text() == "a" else "a"
        try:
            target = kept / slot
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for pattern in STATE_FILES:
                for path in staging.glob(pattern):
                    shutil.copyfile(path, target / path.name)
            (kept / "slot.tmp").write_text(slot)
            (kept / "slot.tmp").replace(pointer)  # the switch: whole or not at all
            self.copied = stamp
        except OSError:  # a full disk: the previous slot stays the kept one; the run itself stops on its own error
            pass


def state_reads(phase_dir: Path) -> bool:
    """Whether Ray Tune's newest state in the phase's experiment reads (its JSON files parse)."""
    for pattern in STATE_FILES[:2]:
        found = sorted(Path(phase_dir).glob(pattern))
        if not found:
            return False
        try:
            json.loads(found[-1].read_text())
        except (ValueError, UnicodeDecodeError, OSError):
            return False
    return True


def restore_last_good_state(phase_dir: Path) -> bool:
    """Before a resume: if Ray Tune's state in the phase's experiment does not read (a copy cut short by a full
    disk), put the last kept snapshot in its place; returns whether it did. A trial that ended after that snapshot
    is trained again, as after a kill (README, Interrupting and resuming)."""
    phase_dir = Path(phase_dir)
    if state_reads(phase_dir):
        return False
    pointer = phase_dir / LAST_GOOD / "slot"
    if not pointer.is_file():
        raise StudyError(f"Ray Tune's saved state in {phase_dir} does not read and no earlier copy was kept; delete "
                         f"{phase_dir} to search every unfinished search again from its start")
    for pattern in STATE_FILES:
        for path in phase_dir.glob(pattern):
            path.unlink()
    for path in (phase_dir / LAST_GOOD / pointer.read_text()).iterdir():
        shutil.copyfile(path, phase_dir / path.name)
    return True


def trial_folder(trial) -> str:
    """A trial's folder in the phase's experiment: its search's name, then its own (study/search/rundir.py)."""
    return phase_trial_folder(search_of(trial), trial.trial_id)


def ray_trial_name(trial) -> str:
    return trial_name(trial.trial_id)


def new_phase_tuner(ids, search, trainable, reporter, class_info) -> tune.Tuner:
    """A Ray Tune run of the searches `ids` (SearchIds, in the study's order) in the run's own folder; the search
    spaces are bound to the data's shape (class_info: search_spaces.DataShape)."""
    spec, run = search.spec, search.run
    epochs = spec.train.optim.epochs
    storage = optuna.storages.RDBStorage(run.optuna_url)
    # metric/mode go to each searcher and scheduler themselves: a define-by-run OptunaSearch does not get them
    # from TuneConfig and fails at its first suggestion.
    searchers = {which.name: OptunaSearch(space=space_for(which.head, class_info), metric=METRIC, mode=MODE,
                                          seed=sampler_seed(spec.seed, which.index), study_name=which.name,
                                          storage=storage)
                 for which in ids}
    schedulers = {which.name: ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=MODE, max_t=epochs,
                                            # min(): runs whose study.json predates the shortened grace period
                                            grace_period=min(spec.grace_period, epochs),
                                            reduction_factor=spec.reduction_factor)
                  for which in ids}
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=SearchesSearcher(searchers, spec.trials_per_search),
                                    scheduler=AshaPerSearch(schedulers),
                                    num_samples=len(ids) * spec.trials_per_search,
                                    max_concurrent_trials=search.max_concurrent, reuse_actors=True,
                                    trial_name_creator=ray_trial_name, trial_dirname_creator=trial_folder),
        run_config=tune.RunConfig(
            name=PHASE_FOLDER, storage_path=str(run.path),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=2),  # a crashed trial restarts from its checkpoint
            verbose=1, progress_reporter=reporter,
            # the last good copy of Ray's state, for a resume after a full disk; a resumed trial whose checkpoint
            # that state names was deleted starts again (study/search/lost_checkpoints.py)
            callbacks=[KeepLastGoodState(run.phase_dir), RestartLostCheckpoints()],
        ),
    )


def search_of(result_or_trial) -> str:
    """The search a Ray trial (or its result) belongs to."""
    return result_or_trial.config[SEARCH_KEY]
