"""Every head's search space, in-process: each corner of it (every float and int at both ends of its range, every
categorical choice) makes a valid configuration for every preset, whose head builds at that preset's feature width
and trains one step to a finite loss. The studies in tests/test_tune.py run a few heads' searches through Ray and
Optuna end to end; this covers every registered head's space without a search."""
import itertools

import numpy as np
import optuna
import pytest
import torch

from search_spaces import space_for
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


def corners(head: str) -> list:
    recorder = RangeRecorder()
    space_for(head)(recorder)
    names = list(recorder.corners)
    return [dict(zip(names, values)) for values in itertools.product(*recorder.corners.values())]


@pytest.fixture(scope="module")
def class_info():
    rng = np.random.default_rng(0)
    return ClassInfo(num_classes=NUM_CLASSES, coarse_of_fine=tuple(k % NUM_COARSE for k in range(NUM_CLASSES)),
                     class_counts=tuple(int(c) for c in rng.integers(5, 50, NUM_CLASSES)),
                     class_embeddings=rng.normal(size=(NUM_CLASSES, 8)))


def feature_width(train) -> int:
    """What the head sees under a preset: the neck's width on frozen features, else the backbone's."""
    if train.frozen.enabled and train.frozen.neck_width:
        return train.frozen.neck_width
    return create_backbone(train.model.backbone, **train.model.backbone_knobs).num_features


WIDTHS = {name: feature_width(preset.train) for name, preset in PRESETS.items()}


@pytest.mark.parametrize("head", list_heads())
def test_every_corner_of_every_space_is_a_valid_config_that_trains(head, class_info):
    configs = corners(head)
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
    names = set(corners(head)[0])
    for _ in range(3):
        trial = study.ask()
        space_for(head)(trial)
        assert set(trial.params) == names  # every trial samples the same parameters (no conditional ones)
        with_sampled(PRESETS["frozen"].train.replace(**{"model.head": head}), trial.params)
        study.tell(trial, 0.5)
