"""What one head's search did, from Ray's results: every trial's outcome, the best one by the stated rule, the
trials' timings (peak concurrency, set-up time) and where they ran."""
import math
import statistics
from collections import Counter

from study.search.trainable import sampled_values
from study.selection import RULE, best_trial
from study.timing import steady_median

METRIC, MODE = RULE["metric"], RULE["mode"]


def summarise(head: str, grid, wall_s: float) -> dict:
    """The summary.json of a finished search (its keys: README, Study outputs)."""
    trials = []
    for result in grid:
        frame = result.metrics_dataframe
        history = frame.to_dict("list") if frame is not None and len(frame) else {}
        finite = [a for a in history.get(METRIC, []) if a is not None and math.isfinite(a)]
        trials.append({
            "trial_id": (result.metrics or {}).get("trial_id"),
            "path": result.path,
            "params": sampled_values(result.config or {}),  # the search space's values (the base is the spec's)
            "status": "error" if result.error else ("diverged" if any(history.get("diverged", [])) else "ok"),
            "error": last_line(result.error) if result.error else divergence(history),
            "epochs": len(finite),
            "last_val_acc": finite[-1] if finite else None,
            "best_val_acc": max(finite) if finite else None,
            "median_epoch_time_s": none_if_nan(steady_median(history.get("epoch_time_s", []))),
            "started_at": history.get("trial_started_at", [None])[0],
            "ended_at": history.get("reported_at", [None])[-1],
            "setup_s": setup_seconds(history),
            "node_id": history.get("node_id", [None])[0],  # the Ray node it ran on
        })
    return {"head": head, "wall_s": wall_s, "metric": METRIC, "mode": MODE,
            "peak_concurrent_trials": peak_concurrency(trials),
            "median_setup_s": median_or_none([t["setup_s"] for t in trials]),
            "trials_per_node": dict(Counter(t["node_id"] for t in trials if t["node_id"])),
            "rule": RULE, "best": best_trial(trials), "trials": trials}


def setup_seconds(history: dict):
    """Seconds from entering the trainable to starting the first epoch (model build, data to device, restore)."""
    try:
        first = history["reported_at"][0] - history["trial_started_at"][0]
        return first - history["epoch_time_s"][0] - history["eval_time_s"][0]
    except (KeyError, IndexError, TypeError):
        return None


def peak_concurrency(trials) -> int:
    """Most trials whose [started_at, ended_at] intervals overlap at one moment."""
    events = sorted((t, step) for trial in trials if trial["started_at"] and trial["ended_at"]
                    for t, step in ((trial["started_at"], 1), (trial["ended_at"], -1)))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def divergence(history: dict):
    """Why a diverged trial stopped, or None."""
    for epoch, diverged, loss in zip(history.get("epoch", []), history.get("diverged", []),
                                     history.get("train_loss", [])):
        if diverged:
            return f"training loss became {loss} at epoch {epoch}; the trial stopped there"
    return None


def last_line(error) -> str:
    """The exception itself: the last non-empty line of Ray's wrapped traceback text."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def none_if_nan(value):
    return None if value is None or math.isnan(value) else value  # summary.json stays strict JSON


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
