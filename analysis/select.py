"""Choosing each search's best trial by one stated rule, and the final configuration it is retrained with."""
from study.config import TrainConfig, with_sampled
from study.selection import best_trial


def best_trials(summaries: dict) -> dict:
    """{head: [best trial summary or None, for each of its searches in order]}, by study.selection.RULE
    (summaries: {head: [summary of each search]})."""
    return {head: [best_trial(summary["trials"]) for summary in searches] for head, searches in summaries.items()}


def final_config(spec, head: str, params: dict, seed: int, epochs: int = None, device: str = None) -> TrainConfig:
    """The tuned configuration retrained on all training examples (train + val) and evaluated on test.

    It keeps the study's data budget: a study tuned on a subset of N examples retrains on N drawn from all the
    training ones, so the steps per epoch, and with them the tuned schedule, stay the same."""
    cfg = with_sampled(spec.head_config(head), params)
    changes = {"data.final": True, "run.seed": seed}
    if epochs is not None:
        changes["optim.epochs"] = epochs
    if device is not None:
        changes["run.device"] = device
    return cfg.replace(**changes)
