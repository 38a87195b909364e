"""Choosing each search's best trial by one stated rule, and the final configuration it is retrained with."""
from study.config import TrainConfig, with_sampled
from study.selection import best_trial


def best_trials(summaries: dict) -> dict:
    """{head: [best trial summary or None, for each of its searches in order]}, by study.selection.RULE
    (summaries: {head: [summary of each search]})."""
    return {head: [best_trial(summary["trials"]) for summary in searches] for head, searches in summaries.items()}


def final_config(spec, head: str, params: dict, seed: int, epochs: int = None, device: str = None) -> TrainConfig:
    """The tuned configuration retrained with another seed on the tuning split's training examples (the subset, if
    the study tuned on one: the same rows, steps per epoch and schedule as tuned) and evaluated on test once
    (study/splits.py: make_splits, final)."""
    cfg = with_sampled(spec.head_config(head), params)
    changes = {"data.final": True, "run.seed": seed}
    if epochs is not None:
        changes["optim.epochs"] = epochs
    if device is not None:
        changes["run.device"] = device
    return cfg.replace(**changes)
