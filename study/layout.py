"""Names in a study's run directory, shared by the study (which writes them) and the analysis (which reads them).

    runs/<name>/study.json            the resolved study: heads, preset, overrides, command, versions, git commit
    runs/<name>/optuna.db             one Optuna study per head (optuna-dashboard sqlite:///runs/<name>/optuna.db)
    runs/<name>/<head>/               Ray Tune's experiment: a folder per trial with params.json, progress.csv,
                                      result.json and TensorBoard event files; experiment state for --resume
    runs/<name>/<head>/summary.json   written when the head's search has finished: every trial and the best one
    runs/<name>/<head>/gpu_utilisation.csv   GPU samples taken during the search (local runs with GPU trials)
    runs/<name>/analysis/             written by `python -m analysis` (see analysis/__init__.py)
"""
from pathlib import Path

STUDY_FILE = "study.json"
SUMMARY_FILE = "summary.json"
OPTUNA_FILE = "optuna.db"
GPU_FILE = "gpu_utilisation.csv"


def optuna_storage(run_dir: Path) -> str:
    return f"sqlite:///{Path(run_dir) / OPTUNA_FILE}"
