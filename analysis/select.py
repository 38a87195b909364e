"""Choosing each head's best trial by one stated rule, and the final configuration it is retrained with."""
from study.config import TrainConfig, with_sampled

RULE = {
    "metric": "val_acc",
    "mode": "max",
    "scope": "the trial's last reported epoch",
    "why": ("the last epoch is the model a trial actually ends with; the best epoch would reward noise, and "
            "trials ASHA stopped early compete with what they reached"),
    "excluded": "diverged (non-finite loss) and errored trials",
}


def best_trials(summaries: dict) -> dict:
    """{head: best trial summary or None}. Ties keep the earlier trial."""
    best = {}
    for head, summary in summaries.items():
        eligible = [t for t in summary["trials"] if t["status"] == "ok" and t["last_val_acc"] is not None]
        best[head] = max(eligible, key=lambda t: t["last_val_acc"]) if eligible else None
    return best


def final_config(study: dict, head: str, params: dict, seed: int, epochs: int = None, device: str = None) -> TrainConfig:
    """The tuned configuration retrained on all training images (train + val) and evaluated on test.

    It keeps the study's data budget: a study tuned on a subset of N images retrains on N images drawn from all 50k,
    so the steps per epoch, and with them the tuned schedule, stay the same."""
    base = TrainConfig.from_dict(study["train"]).replace(**{"model.head": head})
    cfg = with_sampled(base, params)
    changes = {"data.final": True, "run.seed": seed}
    if epochs is not None:
        changes["optim.epochs"] = epochs
    if device is not None:
        changes["run.device"] = device
    return cfg.replace(**changes)
