"""Define-by-run Optuna search spaces, one per head: functions that only call `trial.suggest_*`.
Every trial of a head samples the same parameters (no conditional ones), so the results tabulate cleanly.

Every space samples the optimiser's learning rate and weight decay the same way, then the head's own knobs, so each
head is tuned with the same budget over comparable ranges. Parameter names are the config fields they set: the
names of `OptimConfig` fields, else the head's knobs (see study/search/trainable.py).
"""
from study.errors import ConfigError
from study.heads import head_knobs
from study.heads.trees import list_tree_layouts
from study.registry import Registry

SPACES = Registry("search space")
register_space = SPACES.register


def space_for(head: str):
    """The head's own space, or the shared optimiser-only space for heads without knobs."""
    if head in SPACES:
        return SPACES.get(head)
    if head_knobs(head):
        raise ConfigError(f"head '{head}' has knobs ({', '.join(head_knobs(head))}) but no search space; add one "
                          f"to search_spaces/ with @register_space('{head}')")
    return optimiser_space


def optimiser_space(trial) -> None:
    trial.suggest_float("lr", 0.02, 1.0, log=True)  # peak SGD-Nesterov lr per batch of 512 (one-cycle)
    trial.suggest_float("weight_decay", 1e-5, 2e-3, log=True)


@register_space("softmax")
def softmax_space(trial) -> None:
    # label_smoothing stays a knob for single runs but is not searched: it would give the baseline a regulariser
    # that the sparse heads' losses have no counterpart of, so no head searches it.
    optimiser_space(trial)


@register_space("gumbel")
def gumbel_space(trial) -> None:
    optimiser_space(trial)
    trial.suggest_float("tau", 0.3, 3.0, log=True)
    trial.suggest_float("tau_final", 0.1, 3.0, log=True)  # geometric schedule tau -> tau_final; equal = constant


@register_space("hierarchical")
def hierarchical_space(trial) -> None:
    optimiser_space(trial)
    trial.suggest_categorical("layout", list_tree_layouts())
    # Sampled for every layout (the coarse layout ignores it) so each trial has the same parameters: Ray's progress
    # table and Optuna's importance plots need that.
    trial.suggest_categorical("branching", [2, 4, 8])


@register_space("adaptive")
def adaptive_space(trial) -> None:
    optimiser_space(trial)
    trial.suggest_float("head_fraction", 0.1, 0.5)
    # Tail cluster i projects to d / div_value^(i+1) dimensions: <= 2 clusters of <= 4x keep d = 16 (tinyvgg-8) valid.
    trial.suggest_int("num_clusters", 1, 2)
    trial.suggest_categorical("div_value", [2.0, 4.0])


@register_space("sampled")
def sampled_space(trial) -> None:
    optimiser_space(trial)
    trial.suggest_int("num_sampled", 5, 50, log=True)


@register_space("entmax")
def entmax_space(trial) -> None:
    optimiser_space(trial)
    trial.suggest_float("alpha", 1.1, 2.0)

