"""The frozen-backbone study: what the backbone is trained on, the feature cache (reuse, invalidation, damage) and
training heads on cached features."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from study import frozen, backbone_recipe, study_kind, backbone_training
from study.config import DataConfig, FrozenConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from study.sources.cifar100 import load_cifar100
from study.errors import ConfigError
from study.heads import list_heads
from study.splits import make_splits
from study.inputs import load_splits
from study.trainer import Trainer, fit


def frozen_cfg(data_dir, **frozen_fields):
    return TrainConfig(
        data=DataConfig(data_dir=str(data_dir), val_size=100),
        model=ModelConfig(backbone="tinyvgg", backbone_knobs={"width": 8}),
        optim=OptimConfig(batch_size=32, epochs=2, lr=0.1),
        run=RunConfig(device="cpu"),
        frozen=FrozenConfig(**{"enabled": True, "epochs": 1, "batch_size": 64, **frozen_fields}),
    )


class Counting:
    """Wraps train_backbone to count how often a backbone is trained."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = frozen.train_backbone

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(frozen, "train_backbone", counted)


@pytest.fixture
def data(fake_data_dir):
    return load_cifar100(str(fake_data_dir))


def features(cfg, data, root, log=None):
    lines = []
    train, test, meta = frozen.FeatureCache(cfg, data, root, log=lines.append).features()
    return train, test, meta, lines


def test_backbone_trains_on_fixed_random_groups_by_default(data, fake_data_dir):
    cfg = frozen_cfg(fake_data_dir)
    assert cfg.frozen.labels == "random"
    groups = backbone_recipe.random_groups(100, 20, seed=0)
    assert sorted(np.bincount(groups)) == [5] * 20  # 20 groups of 5 fine classes
    assert np.array_equal(groups, backbone_recipe.random_groups(100, 20, seed=0))  # fixed by the seed
    assert not np.array_equal(groups, backbone_recipe.random_groups(100, 20, seed=1))
    superclass = np.arange(100) % 20  # tests/fake_cifar.py's map
    # No group is a superclass (nor any tree layout's level built from superclasses).
    assert all(len(set(superclass[groups == g])) > 1 for g in range(20))
    splits = backbone_recipe.backbone_splits(cfg, data)
    tuning = make_splits(data, val_size=100, split_seed=0)
    assert np.array_equal(splits.train_labels, groups[tuning.train_labels])
    assert splits.class_info.num_classes == 20


def test_backbone_trains_on_superclass_labels_of_training_images_only(data, fake_data_dir):
    cfg = frozen_cfg(fake_data_dir, labels="coarse")
    splits = backbone_recipe.backbone_splits(cfg, data)
    tuning = make_splits(data, val_size=100, split_seed=0)
    # The same images as the tuning split's training part, in the same order; never a validation or test image.
    assert np.array_equal(splits.train_images, tuning.train_images)
    assert np.array_equal(splits.eval_images, tuning.eval_images)
    fine_to_coarse = {int(f): int(c) for f, c in zip(range(100), np.arange(100) % 20)}  # tests/fake_cifar.py's map
    assert list(splits.train_labels) == [fine_to_coarse[int(f)] for f in tuning.train_labels]
    assert splits.class_info.num_classes == 20
    fine = backbone_recipe.backbone_splits(frozen_cfg(fake_data_dir, labels="fine"), data)
    assert np.array_equal(fine.train_labels, tuning.train_labels) and fine.class_info.num_classes == 100


def test_features_are_standardised_on_the_tuning_training_images(data, fake_data_dir, monkeypatch):
    """With a stand-in backbone (per-channel mean pixel), the features equal a numpy computation by hand."""
    class ChannelMeans(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    cfg = frozen_cfg(fake_data_dir)
    train, test = backbone_training.standardised(ChannelMeans(), data, cfg)
    from study.sources.cifar100 import CHANNEL_MEAN as MEAN, CHANNEL_STD as STD

    def channel_means(images):
        return ((images / 255.0 - np.array(MEAN)[:, None, None]) / np.array(STD)[:, None, None]).mean((2, 3))

    fit_images = make_splits(data, val_size=100, split_seed=0).train_images  # validation images excluded
    mean, std = channel_means(fit_images).mean(0), channel_means(fit_images).std(0)
    np.testing.assert_allclose(train, (channel_means(data.train_inputs) - mean) / std, atol=1e-4)
    np.testing.assert_allclose(test, (channel_means(data.test_inputs) - mean) / std, atol=1e-4)
    assert train.dtype == np.float32 and test.shape == (len(data.test_labels), 3)


def test_cache_is_reused_across_runs_and_configs_that_share_the_backbone(data, fake_data_dir, tmp_path, monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    train, test, meta, lines = features(cfg, data, tmp_path)
    assert counter.calls == 1 and train.shape == (len(data.train_labels), 16)  # tinyvgg-8: d = 2 * 8
    # What trains on the features (head, optimiser, trial seed, subset, neck, device) does not change them.
    other = cfg.replace(**{"model.head": "taylor", "optim.lr": 0.5, "run.seed": 7, "data.subset": 50,
                           "frozen.neck_width": 16, "data.final": True})
    again, again_test, _, lines = features(other, data, tmp_path)
    assert counter.calls == 1 and any("reusing the cached features" in line for line in lines)
    assert np.array_equal(again, train) and np.array_equal(again_test, test)
    assert meta["recipe"]["train"]["model"]["backbone_knobs"] == {"width": 8} and meta["num_features"] == 16


@pytest.mark.parametrize("change", [{"frozen.epochs": 2}, {"frozen.labels": "fine"}, {"frozen.labels": "coarse"},
                                    {"frozen.lr": 0.05}, {"frozen.batch_size": 32},
                                    {"frozen.seed": 1}, {"model.backbone_knobs": {"width": 4}},
                                    {"data.val_size": 200}, {"data.split_seed": 1}])
def test_a_changed_recipe_gets_its_own_entry(change, data, fake_data_dir, tmp_path, monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    features(cfg, data, tmp_path)
    changed = cfg.replace(**change)
    assert frozen.cache_key(changed, "x") != frozen.cache_key(cfg, "x")
    features(changed, data, tmp_path)
    assert counter.calls == 2 and len(list(tmp_path.iterdir())) == 2


def test_changed_data_gets_its_own_entry(data, fake_data_dir, tmp_path, monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    features(cfg, data, tmp_path)
    pixels = data.test_inputs.copy()
    pixels[0, 0, 0, 0] ^= 1  # one bit of one test pixel
    changed = dataclasses.replace(data, test_inputs=pixels)
    assert frozen.data_fingerprint(changed) != frozen.data_fingerprint(data)
    features(cfg, changed, tmp_path)
    assert counter.calls == 2


def entry(root):
    (folder,) = [p for p in root.iterdir() if p.is_dir()]
    return folder


def test_damaged_features_are_rebuilt_from_the_cached_backbone(data, fake_data_dir, tmp_path, monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    train, test, _, _ = features(cfg, data, tmp_path)
    npz = entry(tmp_path) / frozen.FEATURES_FILE
    npz.write_bytes(npz.read_bytes()[:100])  # truncated, as by a full disk
    again, again_test, _, lines = features(cfg, data, tmp_path)
    assert any("is unreadable" in line and "rebuilding" in line for line in lines)
    assert counter.calls == 1  # the backbone was whole: only its features were extracted again
    np.testing.assert_array_equal(again, train)
    np.testing.assert_array_equal(again_test, test)
    assert features(cfg, data, tmp_path)[3] == [f"frozen backbone: reusing the cached features in {entry(tmp_path)}"]


@pytest.mark.parametrize("damage", ["garbage", "empty", "other recipe"])
def test_damaged_backbone_and_meta_are_rebuilt(damage, data, fake_data_dir, tmp_path, monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    features(cfg, data, tmp_path)
    folder = entry(tmp_path)
    if damage == "other recipe":
        meta = json.loads((folder / frozen.META_FILE).read_text())
        meta["recipe"]["train"]["optim"]["epochs"] = 99
        (folder / frozen.META_FILE).write_text(json.dumps(meta))
        saved = torch.load(folder / frozen.BACKBONE_FILE, weights_only=True)
        saved["recipe"]["train"]["optim"]["epochs"] = 99
        torch.save(saved, folder / frozen.BACKBONE_FILE)
    else:
        content = b"" if damage == "empty" else b"\x00not a file of ours"
        for name in (frozen.META_FILE, frozen.BACKBONE_FILE):
            (folder / name).write_bytes(content)
    train, _, meta, lines = features(cfg, data, tmp_path)
    assert counter.calls == 2 and any("unreadable" in line for line in lines)
    assert meta["recipe"]["train"]["optim"]["epochs"] == 1 and np.isfinite(train).all()
    assert counter.calls == 2 and features(cfg, data, tmp_path)[3][-1].startswith("frozen backbone: reusing")


def test_features_changed_on_disk_fail_their_checksum_and_are_rebuilt(data, fake_data_dir, tmp_path):
    cfg = frozen_cfg(fake_data_dir)
    train, test, _, _ = features(cfg, data, tmp_path)
    npz = entry(tmp_path) / frozen.FEATURES_FILE
    frozen.save_arrays(npz, train=train + 1, test=test)  # loadable, right shapes, finite: only the checksum differs
    again, _, _, lines = features(cfg, data, tmp_path)
    assert any("do not match the checksum" in line for line in lines)
    np.testing.assert_array_equal(again, train)


def test_a_study_refuses_features_other_than_it_was_tuned_on(fake_data_dir, tmp_path, monkeypatch):
    from study.errors import StudyError

    monkeypatch.setenv(frozen.CACHE_ENV, str(tmp_path))
    cfg = frozen_cfg(fake_data_dir)
    splits = load_splits(cfg, log=lambda line: None)
    key, checksum = splits.features_id.split(":")
    assert key == entry(tmp_path).name and len(checksum) == 16
    frozen.check_same_features(splits.features_id, splits, "--resume")  # the same features: fine
    frozen.check_same_features(None, splits, "--resume")  # an end-to-end study records none
    with pytest.raises(StudyError, match=f"--resume: the frozen backbone's features are now {splits.features_id}, "
                                         "not other:0 that this run was tuned on"):
        frozen.check_same_features("other:0", splits, "--resume")


def test_a_constant_feature_is_centred_not_blown_up(data, fake_data_dir):
    class ConstantThenMean(torch.nn.Module):
        """Feature 0: always 0 on training images (a dead channel), feature 1: the mean pixel."""
        def forward(self, x):
            return torch.stack([torch.zeros(len(x)), x.mean(dim=(1, 2, 3))], dim=1)

    train, test = backbone_training.standardised(ConstantThenMean(), data, frozen_cfg(fake_data_dir))
    assert np.all(train[:, 0] == 0) and np.all(test[:, 0] == 0)
    assert abs(train[:, 1].std() - 1) < 0.1


def test_no_temporary_files_are_left(data, fake_data_dir, tmp_path):
    features(frozen_cfg(fake_data_dir), data, tmp_path)
    from study.locks import LOCK_FILE

    assert sorted(p.name for p in entry(tmp_path).iterdir()) == sorted(
        [frozen.META_FILE, frozen.FEATURES_FILE, frozen.BACKBONE_FILE, LOCK_FILE])  # the builders' lock (study.locks)


def test_every_head_trains_on_cached_features(fake_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(frozen.CACHE_ENV, str(tmp_path))
    cfg = frozen_cfg(fake_data_dir)
    splits = load_splits(cfg, log=lambda line: None)
    assert splits.holds_features and splits.train_images.shape[1] == 16
    # The tree layouts cluster classes by their mean feature vector: one row per class, of the feature width.
    assert splits.class_info.class_embeddings.shape == (100, 16)
    for head in list_heads():
        if head.startswith("test_"):
            continue
        for neck in (0, 24):
            c = cfg.replace(**{"model.head": head, "frozen.neck_width": neck})
            trainer = Trainer(c, splits)
            history = list(fit(c, trainer=trainer))
            assert len(history) == 2 and np.isfinite(history[-1]["train_loss"]), (head, neck)
            evaluation = trainer.evaluate()
            assert (len(evaluation), evaluation.num_classes) == (len(splits.eval_labels), 100)
            with torch.no_grad():  # the full outputs, straight from the model in evaluation mode
                log_probs = trainer.head.log_probs(trainer.backbone(trainer.eval_data.features)).numpy()
            np.testing.assert_allclose(np.exp(log_probs).sum(1), 1, atol=1e-4)
            np.testing.assert_allclose(evaluation.target_log_prob,
                                       log_probs[np.arange(len(log_probs)), splits.eval_labels], atol=1e-6)


def test_neck_width_sets_the_heads_input(fake_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(frozen.CACHE_ENV, str(tmp_path))
    cfg = frozen_cfg(fake_data_dir, neck_width=12)
    splits = load_splits(cfg, log=lambda line: None)
    trainer = Trainer(cfg, splits)
    linear = [m for m in trainer.backbone.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(16, 12)]
    plain = Trainer(cfg.replace(**{"frozen.neck_width": 0}), splits)
    assert not list(plain.backbone.parameters())  # no neck: the head reads the features directly


def test_images_and_features_are_not_mixed_up(fake_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(frozen.CACHE_ENV, str(tmp_path))
    cfg = frozen_cfg(fake_data_dir)
    image_splits = load_splits(cfg.replace(**{"frozen.enabled": False}))
    with pytest.raises(ConfigError, match="frozen.enabled=True but the splits hold images"):
        Trainer(cfg, image_splits)


@pytest.mark.parametrize("field, value, message", [
    ("labels", "both", "unknown frozen.labels 'both'; choose from: random, coarse, fine"),
    ("epochs", 0, "frozen.epochs=0 must be >= 1"),
    ("lr", 0.0, "frozen.lr=0.0 must be > 0"),
    ("batch_size", 1, "frozen.batch_size=1 must be >= 2"),
    ("neck_width", -1, "frozen.neck_width=-1 must be >= 0"),
])
def test_bad_frozen_values_are_one_line(field, value, message, fake_data_dir):
    from study.config import validate

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(frozen_cfg(fake_data_dir).replace(**{f"frozen.{field}": value}))


def test_the_kind_of_study_is_said_plainly(fake_data_dir):
    text = study_kind.describe(frozen_cfg(fake_data_dir), 100)
    assert text.startswith("frozen-backbone study: tinyvgg-8 trained once (1 epoch,")
    assert "20 fixed random groups of 5" in text and "16-dimensional features" in text and "does not measure" in text
    assert "200 fixed random groups of 5" in study_kind.describe(frozen_cfg(fake_data_dir), 1000)  # K from the data
    assert "a bias towards it" in study_kind.describe(frozen_cfg(fake_data_dir, labels="coarse"), 100)
    assert "the 1000 fine labels" in study_kind.describe(frozen_cfg(fake_data_dir, labels="fine"), 1000)
    assert "12-unit neck" in study_kind.describe(frozen_cfg(fake_data_dir, neck_width=12), 100)
    assert study_kind.describe(frozen_cfg(fake_data_dir).replace(**{"frozen.enabled": False}), 100).startswith(
        "end-to-end study: every head trains the whole tinyvgg-8 backbone")


def test_frozen_features_are_evaluated_in_large_batches_with_the_same_predictions():
    """The default validation batch for features (4,096 rows) gives what batches of 32 give, to float32 rounding."""
    from study.bench.trial import feature_splits
    from study.presets import PRESETS
    from study.trainer import FEATURE_EVAL_BATCH_SIZE, Trainer

    splits = feature_splits(rows=600, val_rows=5000, width=32, classes=100)
    outputs = {}
    for size in (None, 32):
        cfg = PRESETS["frozen"].train.replace(**{"model.head": "entmax", "model.head_knobs": {"alpha": 1.3},
                                                 "run.device": "cpu", "run.eval_batch_size": size})
        trainer = Trainer(cfg, splits)
        trainer.train_epoch()
        batches = list(trainer.eval_data.eval_batches(cfg.run.eval_batch_size or FEATURE_EVAL_BATCH_SIZE))
        outputs[size] = (len(batches), trainer.evaluate())
    assert outputs[None][0] == 2 and outputs[32][0] == 157  # 5,000 rows: 4,096 + 904, or 156 x 32 + 8
    whole, small = outputs[None][1], outputs[32][1]
    np.testing.assert_array_equal(whole.predicted, small.predicted)
    np.testing.assert_array_equal(whole.top_classes, small.top_classes)
    for name in ("predicted_log_prob", "target_log_prob", "top_log_probs"):
        np.testing.assert_allclose(getattr(whole, name), getattr(small, name), atol=1e-5)
