"""Names in a study's run directory, shared by the study (which writes them) and the analysis (which reads them).

    runs/<name>/study.json            the resolved study: heads, preset, overrides, command, versions, git commit
    runs/<name>/optuna.db             one Optuna study per head (optuna-dashboard sqlite:///runs/<name>/optuna.db)
    runs/<name>/<head>/               Ray Tune's experiment: a folder per trial with params.json, progress.csv,
                                      result.json and TensorBoard event files; experiment state for --resume
    runs/<name>/<head>/summary.json   written when the head's search has finished: every trial and the best one
    runs/<name>/<head>/gpu_utilisation.csv   GPU samples taken during the search (local runs with GPU trials)
    runs/<name>/analysis/             written by `python -m analysis` (see analysis/__init__.py)
"""
import json
import re
from pathlib import Path

from study.errors import StudyError

STUDY_FILE = "study.json"
SUMMARY_FILE = "summary.json"
OPTUNA_FILE = "optuna.db"
GPU_FILE = "gpu_utilisation.csv"


def optuna_storage(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir) / OPTUNA_FILE}"


# A run's name is one plain folder name, so the run stays inside --storage (no "..", "/" or hidden names).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

# What study.json must hold for --resume and the analysis, and of which type (older runs lack only optional keys).
STUDY_KEYS = {"name": str, "heads": list, "preset": str, "preset_reason": str, "num_samples": int,
              "gpus_per_trial": (int, float), "cpus_per_trial": (int, float), "grace_period": int,
              "reduction_factor": int, "checkpoint_every": int, "final_seeds": int, "seed": int, "train": dict}


def check_run_name(name: str) -> str:
    if not RUN_NAME.fullmatch(name or ""):
        raise StudyError(f"--name '{name}' is not a plain run name: use letters, digits, '.', '_' and '-' (not "
                         "starting with '.' or '-', at most 128), so the run stays inside --storage")
    return name


def read_study(run_dir: Path) -> dict:
    """study.json of a run, checked: one line naming the file and what is wrong with it, never a traceback."""
    from study.config import TrainConfig

    path = Path(run_dir) / STUDY_FILE
    if not path.is_file():
        raise StudyError(f"{run_dir} is not a study run directory (no {STUDY_FILE}); pass runs/<name>")
    damaged = f"{path} is damaged"
    try:
        study = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StudyError(f"{damaged} (not valid JSON: {error}); restore it, or start a new run") from None
    if not isinstance(study, dict):
        raise StudyError(f"{damaged} (it holds a {type(study).__name__}, not an object); restore it, or start a "
                         "new run")
    for key, kind in STUDY_KEYS.items():
        if key not in study:
            raise StudyError(f"{damaged} (no '{key}'; it is incomplete); restore it, or start a new run")
        value = study[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise StudyError(f"{damaged} ('{key}' is {value!r}); restore it, or start a new run")
    if not study["heads"] or not all(isinstance(h, str) and h for h in study["heads"]):
        raise StudyError(f"{damaged} ('heads' is {study['heads']!r}, expected a list of head names); restore it, or "
                         "start a new run")
    try:
        TrainConfig.from_dict(study["train"])
    except (StudyError, TypeError, AttributeError) as error:
        raise StudyError(f"{damaged} (its 'train' configuration: {error}); restore it, or start a new run") from None
    return study
