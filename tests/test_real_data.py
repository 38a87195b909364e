"""Checks on the real CIFAR-100 (skipped, with the reason, when $SOFTMAX_STUDY_DATA does not point at it)."""
import math

import numpy as np
import pytest

from conftest import real_data_dir
from study.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from study.sources.cifar100 import load_cifar100
from study.heads import list_heads
from study.splits import make_splits
from study.trainer import fit

ROOT = real_data_dir()
pytestmark = pytest.mark.skipif(ROOT is None, reason="real CIFAR-100 not found: set SOFTMAX_STUDY_DATA")


@pytest.fixture(scope="module")
def real():
    return load_cifar100(ROOT, allow_download=False)


def test_real_data_structure(real):
    assert real.train_inputs.shape == (50000, 3, 32, 32) and real.test_inputs.shape == (10000, 3, 32, 32)
    assert np.bincount(real.train_labels).tolist() == [500] * 100
    assert np.bincount(real.test_labels).tolist() == [100] * 100
    assert real.train_labels[0] == 19 and real.class_names[19] == "cattle"
    assert real.test_labels[0] == 49 and real.class_names[49] == "mountain"
    assert len(set(real.top_groups().tolist())) == 20


def test_tinyvgg_learns_in_one_epoch_of_a_5k_subset(real):
    splits = make_splits(real, subset=5000)
    # Width 32 rather than the default 64: a third of the time on CI's 2 cores, still well above 1 % chance.
    cfg = TrainConfig(data=DataConfig(subset=5000),
                      model=ModelConfig(backbone="tinyvgg", head="softmax", backbone_knobs={"width": 32}),
                      optim=OptimConfig(lr=0.1, batch_size=128, epochs=1), run=RunConfig(device="cpu"))
    (metrics,) = list(fit(cfg, splits))
    assert metrics["val_acc"] > 0.03, f"val accuracy {metrics['val_acc']:.3f} is not well above chance (0.01)"


@pytest.mark.parametrize("head", list_heads())
def test_every_head_trains_without_nan_on_real_data(head, real):
    splits = make_splits(real, subset=1000)
    cfg = TrainConfig(model=ModelConfig(backbone="tinyvgg", head=head, backbone_knobs={"width": 16}),
                      optim=OptimConfig(lr=0.05, batch_size=128, epochs=1), run=RunConfig(device="cpu"))
    (metrics,) = list(fit(cfg, splits))
    assert not metrics["diverged"] and math.isfinite(metrics["val_loss"])
