"""Reading a study's run directory into plain dicts and tidy frames. Nothing here trains or writes."""
import json
from pathlib import Path

import pandas as pd

from study.layout import SUMMARY_FILE


def read_summaries(run_dir: Path, heads) -> dict:
    """{head: summary} for heads whose search finished; heads without one are left out (the caller reports them)."""
    summaries = {}
    for head in heads:
        path = Path(run_dir) / head / SUMMARY_FILE
        if path.is_file():
            summaries[head] = json.loads(path.read_text())
    return summaries


def trials_frame(summaries: dict) -> pd.DataFrame:
    rows = []
    for head, summary in summaries.items():
        for trial in summary["trials"]:
            row = {k: v for k, v in trial.items() if k not in ("params", "path")}
            rows.append({"head": head, **row, **{f"param_{k}": v for k, v in (trial["params"] or {}).items()}})
    return pd.DataFrame(rows)


def trial_curve(run_dir: Path, head: str, trial_id: str) -> pd.DataFrame:
    """Per-epoch metrics Ray logged for one trial (empty when the trial left none)."""
    path = Path(run_dir) / head / f"trial_{trial_id}" / "progress.csv"
    if not path.is_file():
        return pd.DataFrame()
    frame = pd.read_csv(path)  # Ray's columns include trial_id
    frame.insert(0, "head", head)
    return frame
