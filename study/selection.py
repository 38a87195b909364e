"""The one rule that picks a head's best trial; the study's report and the analysis both apply it."""

RULE = {
    "metric": "val_acc",
    "mode": "max",
    "scope": "the trial's last reported epoch",
    "why": ("the last epoch is the model a trial actually ends with; the best epoch would reward noise, and "
            "trials ASHA stopped early compete with what they reached"),
    "excluded": "diverged (non-finite loss) and errored trials",
}


def best_trial(trials):
    """The eligible trial summary with the highest last val_acc (ties: the earlier one), or None."""
    eligible = [t for t in trials if t["status"] == "ok" and t["last_val_acc"] is not None]
    return max(eligible, key=lambda t: t["last_val_acc"]) if eligible else None
