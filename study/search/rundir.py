"""A study's run directory: every name and path in it, and the one place that reads and writes its files.

    runs/<name>/study.json            the study spec (study/search/spec.py): heads, preset, budget, provenance
    runs/<name>/optuna.db             one Optuna study per head (optuna-dashboard sqlite:///runs/<name>/optuna.db)
    runs/<name>/trials/               Ray Tune's experiment of the search phase, every search in one run
                                      (study/search/phase.py): <search>_trial_<id>/ with params.json,
                                      progress.csv, result.json and TensorBoard event files; state for --resume
    runs/<name>/<head>/summary.json   the head's first search, written when it has finished: every trial and the
                                      best one
    runs/<name>/<head>-search<n>/summary.json   the head's n-th search (study/search/searches.py)
    runs/<name>/gpu_utilisation.csv   GPU samples taken during the search phase (local runs with GPU trials)
    Runs made before the search phase ran each search in a Ray Tune run of its own, in the search's folder
    (trial_<id>/, its state for --resume, gpu_utilisation.csv); such a search is resumed that way.
    runs/<name>/analysis/             written by `python -m analysis` (analysis/__init__.py lists its files)
    runs/<name>/analysis/predictions/<head>_seed<S>.npz|.json, costs.json   final models; the timing protocol's rounds

The study writes the spec and the summaries; the analysis reads them and writes under analysis/. A file that does
not read back (truncated, not JSON, wrong shape) is one line naming it, never a traceback.
"""
import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from study.errors import StudyError
from study.files import write_text_atomic
from study.search.spec import StudySpec

STUDY_FILE = "study.json"
SUMMARY_FILE = "summary.json"
OPTUNA_FILE = "optuna.db"
GPU_FILE = "gpu_utilisation.csv"
ANALYSIS_FOLDER = "analysis"
PREDICTIONS_FOLDER = "predictions"
TRIAL_PREFIX = "trial_"
PHASE_FOLDER = "trials"  # the search phase's Ray Tune experiment, in the run's folder

# A run's name is one plain folder name, so the run stays inside --storage (no "..", "/" or hidden names).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_name(name: str) -> str:
    if not RUN_NAME.fullmatch(name or ""):
        raise StudyError(f"--name '{name}' is not a plain run name: use letters, digits, '.', '_' and '-' (not "
                         "starting with '.' or '-', at most 128), so the run stays inside --storage")
    return name


def trial_name(trial_id: str) -> str:
    """A trial's folder in its head's experiment (also its name in Ray's progress table)."""
    return f"{TRIAL_PREFIX}{trial_id}"


def phase_trial_folder(search: str, trial_id: str) -> str:
    """A trial's folder in the search phase's experiment: its search's name, then its own."""
    return f"{search}_{trial_name(trial_id)}"


def read_json(path: Path, what: str):
    """A run file's JSON; a damaged one is one line naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StudyError(f"{path} is damaged (not valid JSON: {error}); {what}") from None


class RunDir:
    """The folder of one study run."""

    def __init__(self, path):
        self.path = Path(path).expanduser().resolve()

    def __repr__(self):
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # The study's files.
    @property
    def spec_file(self) -> Path:
        return self.path / STUDY_FILE

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.path / OPTUNA_FILE}"

    @property
    def optuna_db(self) -> Path:
        return self.path / "optuna.db"

    def optuna_db_problem(self):
        """None when optuna.db is absent or reads back whole; else what is wrong with it, in a few words (a
        truncated or overwritten database, as a full disk or a bad copy leaves it)."""
        import sqlite3

        if not self.optuna_db.is_file():
            return None
        # A process killed mid-transaction (kill -9 of a study while Optuna writes) leaves a hot journal beside the
        # file. A read-only connection cannot roll it back and fails with "attempt to write a readonly database";
        # a read-write one rolls it back to the last committed state, as Optuna's own next connection would.
        hot_journal = self.optuna_db.with_name(self.optuna_db.name + "-journal").exists()
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.optuna_db}?mode={'rw' if hot_journal else 'ro'}",
                                                    uri=True)) as db:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
                db.execute("SELECT count(*) FROM studies").fetchone()
        except sqlite3.Error as error:
            return f"{type(error).__name__}: {error}"
        return None if verdict == "ok" else f"sqlite quick_check: {verdict}"

    def head_dir(self, head: str) -> Path:
        """One search's folder: its trials and its summary (`head` is the search's name: study/search/searches.py)."""
        return self.path / head

    def has_own_experiment(self, head: str) -> bool:
        """Whether the search ran in a Ray Tune run of its own (runs made before the search phase)."""
        from ray import tune

        return self.head_dir(head).is_dir() and tune.Tuner.can_restore(str(self.head_dir(head)))

    @property
    def phase_dir(self) -> Path:
        """Ray Tune's experiment of the search phase."""
        return self.path / PHASE_FOLDER

    @property
    def phase_gpu_file(self) -> Path:
        return self.path / GPU_FILE

    def summary_file(self, head: str) -> Path:
        return self.head_dir(head) / SUMMARY_FILE

    def gpu_file(self, head: str) -> Path:
        return self.head_dir(head) / GPU_FILE

    def trial_dir(self, head: str, trial_id: str) -> Path:
        """A trial's folder: in the search phase's experiment, or in its search's own (runs made before)."""
        in_phase = self.phase_dir / phase_trial_folder(head, trial_id)
        return in_phase if in_phase.is_dir() else self.head_dir(head) / trial_name(trial_id)

    # The analysis's files.
    @property
    def analysis_dir(self) -> Path:
        return self.path / ANALYSIS_FOLDER

    @property
    def predictions_dir(self) -> Path:
        return self.analysis_dir / PREDICTIONS_FOLDER

    # Readers and writers.
    def exists(self) -> bool:
        return self.spec_file.is_file()

    def read_spec(self) -> StudySpec:
        if not self.exists():
            raise StudyError(f"{self.path} is not a study run directory (no {STUDY_FILE}); pass runs/<name>")
        return StudySpec.from_dict(read_json(self.spec_file, "restore it, or start a new run"), str(self.spec_file))

    def mark_used(self) -> None:
        """A resumed run becomes the latest one (--resume without --name takes the run used last)."""
        os.utime(self.spec_file)

    def write_spec(self, spec: StudySpec) -> None:
        write_text_atomic(self.spec_file, json.dumps(spec.to_dict(), indent=2))

    def has_summary(self, head: str) -> bool:
        """Whether the head's search finished (its summary is written last)."""
        return self.summary_file(head).is_file()

    def read_summary(self, head: str) -> dict:
        path = self.summary_file(head)
        fix = f"delete it and resume the study to search head '{head}' again (finished trials are kept)"
        summary = read_json(path, fix)
        if not (isinstance(summary, dict) and isinstance(summary.get("trials"), list) and "best" in summary
                and all(isinstance(t, dict) for t in summary["trials"])):
            raise StudyError(f"{path} is damaged (no list of trials and best trial); {fix}")
        return summary

    def write_summary(self, head: str, summary: dict) -> None:
        self.head_dir(head).mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.summary_file(head), json.dumps(summary, indent=2, default=str))

    def read_summaries(self, heads, searches: int = 1) -> dict:
        """{head: [summary of each search]} for heads whose every search finished; heads without them are left
        out (the caller says so)."""
        from study.search.searches import search_ids

        found = {}
        for head in heads:
            names = [which.name for which in search_ids(head, searches)]
            if all(self.has_summary(name) for name in names):
                found[head] = [self.read_summary(name) for name in names]
        return found

    def trial_curve(self, head: str, trial_id: str):
        """Per-epoch metrics Ray logged for one trial (an empty frame when the trial left none)."""
        import pandas as pd

        path = self.trial_dir(head, trial_id) / "progress.csv"
        if not path.is_file():
            return pd.DataFrame()
        frame = pd.read_csv(path)  # Ray's columns include trial_id
        frame.insert(0, "head", head)
        return frame

    # --- The analysis's output files (written by analysis/run.py; analysis/__init__.py says what each holds). ---
    @property
    def best_configs_file(self) -> Path:
        return self.analysis_dir / "best_configs.json"

    @property
    def results_file(self) -> Path:
        return self.analysis_dir / "results.csv"

    @property
    def summary_csv(self) -> Path:
        return self.analysis_dir / "summary.csv"

    @property
    def comparisons_file(self) -> Path:
        return self.analysis_dir / "comparisons.csv"

    @property
    def report_file(self) -> Path:
        return self.analysis_dir / "summary.md"

    @property
    def headline_file(self) -> Path:
        return self.analysis_dir / "headline.md"

    @property
    def confusion_dir(self) -> Path:
        return self.analysis_dir / "confusion"

    @property
    def tensorboard_dir(self) -> Path:
        return self.analysis_dir / "tensorboard"

    @property
    def pareto_png(self) -> Path:
        return self.analysis_dir / "pareto.png"

    @property
    def accuracy_vs_time_csv(self) -> Path:
        return self.analysis_dir / "accuracy_vs_time.csv"

    @property
    def accuracy_vs_time_png(self) -> Path:
        return self.analysis_dir / "accuracy_vs_time.png"

    @property
    def learning_curves_png(self) -> Path:
        return self.analysis_dir / "learning_curves.png"


def prediction_files(predictions_dir: Path, head: str, seed: int):
    """A final model's test outputs (.npz) and its record (.json, written last: it marks the pair complete)."""
    stem = Path(predictions_dir) / f"{head}_seed{seed}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def costs_file(predictions_dir: Path) -> Path:
    """The timing protocol's record: every head's costs, round by round (analysis/timing_protocol.py)."""
    return Path(predictions_dir) / "costs.json"


def read_saved(path: Path):
    """A saved model's record or the costs record, or None when it is missing or does not read back whole (a run killed
    mid-write by older code, a damaged disk): the model is then trained again rather than the analysis stopping."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def arrays_readable(npz: Path) -> bool:
    """Whether a saved .npz reads back whole, as plain arrays (no pickled objects)."""
    return bool(readable_arrays(npz))


def readable_arrays(npz: Path) -> Optional[dict]:
    """A saved .npz's arrays if it reads back whole, as plain arrays (no pickled objects); else None."""
    import zipfile

    from study.files import load_arrays

    try:
        return load_arrays(npz)  # every array, without pickles: an object array is as good as damaged
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def latest_run(storage: Path) -> RunDir:
    """The run started or resumed last (its study.json is touched on each resume)."""
    runs = sorted(Path(storage).glob(f"*/{STUDY_FILE}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise StudyError(f"--resume: no run to resume in {storage}; start one without --resume")
    return RunDir(runs[-1].parent)


def first_missing_folder(path: Path):
    """The outermost folder of `path` that does not exist yet (what making it would create), or None."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            return missing
        missing = folder
    return missing


class NewRunFolder:
    """Make a run's folder for a start that may still fail: `with NewRunFolder(run) as made: ...`. Unless the spec
    was written by the end of the block, every folder it made is removed again, so a failed (or interrupted) start
    leaves nothing behind."""

    def __init__(self, run: RunDir):
        self.run = run
        self.made = first_missing_folder(run.path)

    def __enter__(self):
        try:
            self.run.path.mkdir(parents=True, exist_ok=True)
            probe = self.run.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            self._clean()
            raise StudyError(f"--storage: cannot write to {self.run.path} ({error.strerror}); choose a writable "
                             "folder") from None
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None and not self.run.exists():
            self._clean()
        return False

    def _clean(self):
        if self.made is not None:
            shutil.rmtree(self.made, ignore_errors=True)
