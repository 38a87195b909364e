"""Define-by-run Optuna search spaces, one per head: functions that only call `trial.suggest_*`.
Every trial of a head samples the same parameters (no conditional ones), so the results tabulate cleanly.

Every space samples the optimiser's learning rate and weight decay the same way, then the head's own knobs, so each
head is tuned with the same budget over comparable ranges. Parameter names are the config fields they set: the
names of `OptimConfig` fields, else the head's knobs (see study/search/trainable.py).

A space also receives the data's shape (`DataShape`: the number of classes K, whether there is a class hierarchy),
so that knobs whose valid values depend on K scale with it and every sampled value is valid: the ranges at K = 100
are those the study has always searched.
"""
import functools
from dataclasses import dataclass

from study.class_info import ClassInfo
from study.errors import ConfigError
from study.heads import head_knobs
from study.heads.trees import layouts_for
from study.registry import Registry

SPACES = Registry("search space")
register_space = SPACES.register


@dataclass(frozen=True)
class DataShape:
    """What a space may know of the data: small, as it is saved with every search's state."""
    num_classes: int
    has_hierarchy: bool

    @classmethod
    def of(cls, class_info: ClassInfo) -> "DataShape":
        return cls(class_info.num_classes, class_info.hierarchy() is not None)


# A search saved before spaces took the data's shape calls its space with the trial alone when it is resumed;
# every such search was of CIFAR-100, whose shape this is.
SHAPE_BEFORE_DATA_SOURCES = DataShape(num_classes=100, has_hierarchy=True)


def space_for(head: str, class_info: ClassInfo):
    """The head's own space (else the shared optimiser-only space for heads without knobs), bound to the data's
    shape: a function of the trial alone, as Optuna calls it."""
    if head in SPACES:
        space = SPACES.get(head)
    elif head_knobs(head):
        raise ConfigError(f"head '{head}' has knobs ({', '.join(head_knobs(head))}) but no search space; add one "
                          f"to search_spaces/ with @register_space('{head}')")
    else:
        space = optimiser_space
    return functools.partial(space, data=DataShape.of(class_info))


def optimiser_space(trial, data: DataShape = None) -> None:
    trial.suggest_float("lr", 0.02, 1.0, log=True)  # peak SGD-Nesterov lr per batch of 512 (one-cycle)
    trial.suggest_float("weight_decay", 1e-5, 2e-3, log=True)


@register_space("softmax")
def softmax_space(trial, data: DataShape = SHAPE_BEFORE_DATA_SOURCES) -> None:
    # label_smoothing stays a knob for single runs but is not searched: it would give the baseline a regulariser
    # that the sparse heads' losses have no counterpart of, so no head searches it.
    optimiser_space(trial)


@register_space("gumbel")
def gumbel_space(trial, data: DataShape = SHAPE_BEFORE_DATA_SOURCES) -> None:
    optimiser_space(trial)
    trial.suggest_float("tau", 0.3, 3.0, log=True)
    trial.suggest_float("tau_final", 0.1, 3.0, log=True)  # geometric schedule tau -> tau_final; equal = constant


@register_space("hierarchical")
def hierarchical_space(trial, data: DataShape = SHAPE_BEFORE_DATA_SOURCES) -> None:
    optimiser_space(trial)
    # The layout that follows the data's own hierarchy is offered only when the data has one.
    trial.suggest_categorical("layout", layouts_for(data.has_hierarchy))
    # Sampled for every layout (the coarse layout ignores it) so each trial has the same parameters: Ray's progress
    # table and Optuna's importance plots need that.
    trial.suggest_categorical("branching", [2, 4, 8])


@register_space("adaptive")
def adaptive_space(trial, data: DataShape = SHAPE_BEFORE_DATA_SOURCES) -> None:
    optimiser_space(trial)
    k = data.num_classes
    # The head cluster holds round(K x head_fraction) classes: at least one (hence the 1/K floor), and at most
    # half, which leaves K - round(K / 2) >= 1 tail classes for the tail clusters to split.
    trial.suggest_float("head_fraction", max(0.1, 1 / k), 0.5)
    # Tail cluster i projects to d / div_value^(i+1) dimensions: <= 2 clusters of <= 4x keep d = 16 (tinyvgg-8) valid;
    # no more clusters than the fewest tail classes (K - round(K / 2)).
    trial.suggest_int("num_clusters", 1, min(2, k - round(k / 2)))
    trial.suggest_categorical("div_value", [2.0, 4.0])


def sampled_range(num_classes: int):
    """(low, high) negatives per step: 5 to max(50, K / 10), below K (the published 10 % of the classes at large K;
    5 to 50 at K = 100)."""
    high = min(num_classes - 1, max(50, num_classes // 10))
    return min(5, high), high


@register_space("sampled")
def sampled_space(trial, data: DataShape = SHAPE_BEFORE_DATA_SOURCES) -> None:
    optimiser_space(trial)
    low, high = sampled_range(data.num_classes)
    trial.suggest_int("num_sampled", low, high, log=True)


@register_space("entmax")
def entmax_space(trial, data: DataShape = SHAPE_BEFORE_DATA_SOURCES) -> None:
    optimiser_space(trial)
    trial.suggest_float("alpha", 1.1, 2.0)
