"""Data sources: the registry, the dataset type's hierarchy, and the cifar100 source unchanged by the redesign."""
import hashlib
import json

import numpy as np
import pytest

from study import frozen, backbone_recipe
from study.config import DataConfig, FrozenConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, validate
from study.errors import ConfigError, DataError, UnknownNameError
from study.sources import create_source, list_sources, parse_source
from study.sources.dataset import Dataset, check_hierarchy, top_groups
from study.splits import make_splits


def digest(*values) -> str:
    """sha256 (16 hex digits) of arrays' bytes and of other values' JSON."""
    d = hashlib.sha256()
    for v in values:
        plain = isinstance(v, (str, tuple, list))
        d.update(json.dumps(v, default=str).encode() if plain else np.ascontiguousarray(np.asarray(v)).tobytes())
    return d.hexdigest()[:16]


# Digests of the fake CIFAR-100 (tests/fake_cifar.py) through the loader, splits and frozen-backbone cache as they
# were before data sources existed (commit 23fabf1, which read CIFAR-100 in study/data.py), by this file's digest().
# The final split's is no longer pinned: since format 5 of the final models it trains on the tuning split's rows
# (checked below against the tuning split's own digest), not on all training images as at 23fabf1.
BEFORE_SOURCES = {
    "tuning": "ea06f9837bacce59", "subset": "9123b56e83873d38",
    "fingerprint": "e3ec7c564684f6e4", "cache_key": "e67c5e3243909f8b",
    "labels_random": "8d081d3218914fb5", "labels_coarse": "cf12be83e87d9837", "labels_fine": "2d625a1a7133ee53",
}


def test_cifar100_source_gives_the_same_splits_class_info_labels_and_cache_key_as_before(fake_data_dir):
    data = create_source("cifar100", str(fake_data_dir))
    found = {}
    for name, options in {"tuning": dict(val_size=100), "subset": dict(val_size=100, subset=150, split_seed=3)}.items():
        s = make_splits(data, **options)
        i = s.class_info
        found[name] = digest(s.train_images, s.train_labels, s.eval_images, s.eval_labels, s.eval_split,
                             i.num_classes, tuple(i.coarse_of_fine), tuple(i.class_counts), i.class_embeddings,
                             tuple(i.fine_names), tuple(i.coarse_names))
    final, tuning = make_splits(data, val_size=100, final=True), make_splits(data, val_size=100)
    assert digest(final.train_images, final.train_labels, final.val_images, final.val_labels) == digest(
        tuning.train_images, tuning.train_labels, tuning.eval_images, tuning.eval_labels)
    assert digest(final.eval_images, final.eval_labels) == digest(data.test_inputs, data.test_labels)
    cfg = TrainConfig(data=DataConfig(data_dir=str(fake_data_dir), val_size=100),
                      model=ModelConfig(backbone="tinyvgg", backbone_knobs={"width": 8}),
                      optim=OptimConfig(batch_size=32, epochs=2, lr=0.1), run=RunConfig(device="cpu"),
                      frozen=FrozenConfig(enabled=True, epochs=1, batch_size=64))
    fingerprint = frozen.data_fingerprint(data)
    found["fingerprint"], found["cache_key"] = fingerprint[:16], frozen.cache_key(cfg, fingerprint)
    for labels in ("random", "coarse", "fine"):
        y, names, count = backbone_recipe.backbone_labels(cfg.replace(**{"frozen.labels": labels}), data)
        found[f"labels_{labels}"] = digest(y, tuple(names), count)
    assert found == BEFORE_SOURCES


def test_cifar100_hierarchy_is_its_superclasses(fake_data_dir):
    data = create_source("cifar100", str(fake_data_dir))
    assert data.num_classes == 100 and len(data.parents) == 120 and data.parents[100:] == (-1,) * 20
    assert data.top_group_names() == data.group_names and len(set(data.top_groups().tolist())) == 20
    assert data.channel_mean is not None and not data.holds_features


def test_unknown_sources_and_arguments_are_one_line_naming_the_choices():
    assert "cifar100" in list_sources()
    assert parse_source("cifar100") == ("cifar100", "")
    with pytest.raises(UnknownNameError, match="unknown data source 'cifar10'; choose from: .*cifar100"):
        parse_source("cifar10:x")
    with pytest.raises(ConfigError, match="takes no argument"):
        create_source("cifar100:somewhere")
    with pytest.raises(UnknownNameError, match="unknown data source 'nope'"):
        validate(TrainConfig(data=DataConfig(source="nope")))


def test_top_groups_at_any_depth():
    # classes 0..4; groups 5 (0, 1), 6 (5, 2) under the top node 7; 3 under top node 8; class 4 a top node itself
    parents = (5, 5, 6, 8, -1, 6, 7, -1, -1)
    groups, tops = top_groups(parents, 5)
    assert tops == (4, 7, 8) and groups.tolist() == [1, 1, 1, 2, 0]
    data = Dataset("x", np.zeros((5, 2), np.float32), np.arange(5), np.zeros((5, 2), np.float32), np.arange(5),
                   class_names=tuple("abcde"), parents=parents, group_names=("g5", "g6", "g7", "g8"))
    assert data.top_group_names() == ("e", "g7", "g8") and data.holds_features


@pytest.mark.parametrize("parents,message", [
    ((2, 2, 3, 2), "cycle through node 2"),  # 2 -> 3 -> 2
    ((2, 2, 7), "parent 7"),  # out of range
    ((2, 2, 3), "gives node 2 the parent 3"),  # one past the last node
    ((3, 3, -1, -1), "group node 2 in 'parents' has no child"),  # the first group node
    ((2, 2, 2), "parent 2"),  # a node its own parent
    ((1, -1), "makes class 1 the parent of node 0"),  # a class with a child
    ((2, 2, -1, -1), "group node 3 in 'parents' has no child"),
    ((0,), "has 1 entries for 2 classes"),
    ((0.5, 1.0, -1.0), "must be a 1-D integer array"),
])
def test_a_hierarchy_that_is_not_a_tree_is_one_line(parents, message):
    with pytest.raises(DataError, match=message):
        check_hierarchy(np.array(parents), 2, "f.npz")
    assert check_hierarchy(np.array((2, 2, -1)), 2, "f.npz") == (2, 2, -1)
