"""Every head's search space, in-process: each corner of it (every float and int at both ends of its range, every
categorical choice) makes a valid configuration for every preset, whose head builds at that preset's feature width
and trains one step to a finite loss; and so at other numbers of classes (K = 2, 3, 1,000), with and without a
class hierarchy, where the spaces scale their K-dependent knobs. The studies in tests/test_tune.py run a few heads'
searches through Ray and Optuna end to end; this covers every registered head's space without a search."""
import itertools

import numpy as np
import optuna
import pytest
import torch

from search_spaces import SHAPE_BEFORE_DATA_SOURCES, DataShape, sampled_range, space_for
from study.backbones import create_backbone
from study.class_info import ClassInfo
from study.config import with_sampled
from study.heads import create_head, list_heads
from study.presets import PRESETS

NUM_CLASSES, NUM_COARSE = 100, 20


class RangeRecorder:
    """Stands in for an Optuna trial: records each parameter's corner values (a range's two ends, every choice)."""

    def __init__(self):
        self.corners = {}

    def suggest_float(self, name, low, high, **_):
        self.corners[name] = [low, high]
        return low

    def suggest_int(self, name, low, high, **_):
        self.corners[name] = [low, high]
        return low

    def suggest_categorical(self, name, choices):
        self.corners[name] = list(choices)
        return choices[0]


def corners(head: str, class_info: ClassInfo) -> list:
    recorder = RangeRecorder()
    space_for(head, class_info)(recorder)
    names = list(recorder.corners)
    return [dict(zip(names, values)) for values in itertools.product(*recorder.corners.values())]


def make_class_info(num_classes: int, groups: int = None) -> ClassInfo:
    """K classes with skewed counts and 8-d embeddings; with `groups`, a two-level hierarchy (class k in k % groups)."""
    rng = np.random.default_rng(num_classes)
    return ClassInfo(num_classes=num_classes,
                     coarse_of_fine=tuple(k % groups for k in range(num_classes)) if groups else None,
                     class_counts=tuple(int(c) for c in rng.integers(5, 50, num_classes)),
                     class_embeddings=rng.normal(size=(num_classes, 8)))


@pytest.fixture(scope="module")
def class_info():
    return make_class_info(NUM_CLASSES, NUM_COARSE)


def feature_width(train) -> int:
    """What the head sees under a preset: the neck's width on frozen features, else the backbone's."""
    if train.frozen.enabled and train.frozen.neck_width:
        return train.frozen.neck_width
    return create_backbone(train.model.backbone, **train.model.backbone_knobs).num_features


WIDTHS = {name: feature_width(preset.train) for name, preset in PRESETS.items()}


@pytest.mark.parametrize("head", list_heads())
def test_every_corner_of_every_space_is_a_valid_config_that_trains(head, class_info):
    configs = corners(head, class_info)
    assert configs and all("lr" in c and "weight_decay" in c for c in configs)  # the shared optimiser space
    torch.manual_seed(0)
    y = torch.arange(32) % NUM_CLASSES
    for preset, params in itertools.product(PRESETS, configs):
        cfg = with_sampled(PRESETS[preset].train.replace(**{"model.head": head}), params)
        assert cfg.optim.lr == params["lr"] and cfg.model.head == head
        model = create_head(head, WIDTHS[preset], NUM_CLASSES, class_info=class_info, **cfg.model.head_knobs)
        model.train()
        model.on_epoch_start(0, cfg.optim.epochs)
        features = torch.randn(32, WIDTHS[preset], requires_grad=True)
        loss = model.loss(features, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(features.grad).all(), (preset, params)


@pytest.mark.parametrize("head", list_heads())
def test_optuna_samples_every_space_define_by_run(head):
    """What a search does with a space: Optuna's seeded sampler fills it, and the values apply to the head."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    info = make_class_info(NUM_CLASSES, NUM_COARSE)
    names = set(corners(head, info)[0])
    for _ in range(3):
        trial = study.ask()
        space_for(head, info)(trial)
        assert set(trial.params) == names  # every trial samples the same parameters (no conditional ones)
        with_sampled(PRESETS["frozen"].train.replace(**{"model.head": head}), trial.params)
        study.tell(trial, 0.5)


OTHER_SHAPES = {"K=2": (2, None), "K=3 with a hierarchy": (3, 2), "K=1000 with a hierarchy": (1000, 10),
                "K=200 without": (200, None)}


@pytest.mark.parametrize("head", list_heads())
@pytest.mark.parametrize("shape", OTHER_SHAPES)
def test_every_corner_is_valid_at_other_numbers_of_classes(head, shape):
    """Every corner at K = 2, 3, 200 and 1,000 builds its head at the presets' narrowest feature width and at the frozen
    preset's, and trains one step to a finite loss: the K-dependent ranges never offer an invalid value."""
    num_classes, groups = OTHER_SHAPES[shape]
    info = make_class_info(num_classes, groups)
    torch.manual_seed(0)
    y = torch.arange(32) % num_classes
    # The optimiser's corners do not change the head: each distinct set of head knobs is built once per width.
    knob_sets = {}
    for params in corners(head, info):
        cfg = with_sampled(PRESETS["frozen"].train.replace(**{"model.head": head}), params)
        knob_sets[repr(sorted(cfg.model.head_knobs.items()))] = dict(cfg.model.head_knobs)
    for width, knobs in itertools.product(sorted({min(WIDTHS.values()), WIDTHS["frozen"]}), knob_sets.values()):
        model = create_head(head, width, num_classes, class_info=info, **knobs)
        model.train()
        model.on_epoch_start(0, PRESETS["frozen"].train.optim.epochs)
        features = torch.randn(32, width, requires_grad=True)
        loss = model.loss(features, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(features.grad).all(), (width, knobs)


def test_k_dependent_ranges_scale_with_k_and_keep_the_ranges_searched_at_k_100():
    def ranges(head, num_classes, groups=None):
        recorder = RangeRecorder()
        space_for(head, make_class_info(num_classes, groups))(recorder)
        return recorder.corners

    assert ranges("sampled", 100)["num_sampled"] == [5, 50]  # as searched before the ranges scaled with K
    assert ranges("sampled", 1000)["num_sampled"] == [5, 100] and ranges("sampled", 10000)["num_sampled"] == [5, 1000]
    assert ranges("sampled", 2)["num_sampled"] == [1, 1] and sampled_range(7) == (5, 6)
    assert ranges("adaptive", 100)["head_fraction"] == [0.1, 0.5] and ranges("adaptive", 100)["num_clusters"] == [1, 2]
    assert ranges("adaptive", 2)["head_fraction"] == [0.5, 0.5] and ranges("adaptive", 3)["num_clusters"] == [1, 1]
    assert "coarse" in ranges("hierarchical", 100, 20)["layout"]
    assert "coarse" not in ranges("hierarchical", 100)["layout"]  # no hierarchy to follow: not offered
    # A search saved before the spaces took the data's shape is resumed with CIFAR-100's shape.
    recorder = RangeRecorder()
    space_for("sampled", make_class_info(100, 20)).func(recorder)
    assert recorder.corners["num_sampled"] == [5, 50] and SHAPE_BEFORE_DATA_SOURCES == DataShape(100, True)
