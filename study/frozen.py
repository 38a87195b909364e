"""Frozen-backbone studies: one backbone trained once, frozen, and its features cached for every head to train on.

Why: on a CPU, training the whole CNN for 9 heads x many trials x several seeds cannot reach real accuracy in
minutes; training one backbone (the `frozen` preset's tinyvgg-16: about 2 minutes on 2 cores, caching its features
included; README, Results) and every head on its features (seconds per trial) can.

The recipe (config.FrozenConfig): model.backbone is trained with a linear softmax classifier on `frozen.labels`
(by default 20 fixed random groups of 5 fine classes, which no head, tree layout or metric knows) using only the
tuning split's training images, so validation and test images are never seen; SGD-Nesterov, one-cycle, random crop
and flip. It is then frozen in eval mode. Its features are global-average-pooled activations of unaugmented images,
standardised with the mean and standard deviation of the tuning split's training features.

Cache: <root>/<key>/{backbone.pt, features.npz, meta.json}, where root is $SOFTMAX_STUDY_CACHE or
~/.cache/softmax-study/frozen and key hashes the recipe, the split and the data's fingerprint (FEATURES_FORMAT
versions the layout). Files are written to a temporary name and renamed, meta.json last; a file that does not
load, or does not match, is rebuilt with one line saying so. Files are read as data only (weights-only torch.load,
np.load without pickles): a shared or copied cache entry cannot run code, whatever it holds.
"""
import hashlib
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from study.class_info import ClassInfo
from study.config import FROZEN_LABELS, DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from study.errors import ConfigError, StudyError
from study import locks
from study.files import CACHE_HOME, load_arrays, load_tensors, save_arrays, write_atomic
from study.sources import source_inputs
from study.sources.dataset import Dataset
from study.splits import Splits, tuning_indices

CACHE_ENV = "SOFTMAX_STUDY_CACHE"
FEATURES_FORMAT = 1  # bump when what the cache holds, or how it is made, changes: old entries are then not reused
META_FILE, FEATURES_FILE, BACKBONE_FILE = "meta.json", "features.npz", "backbone.pt"
EXTRACT_BATCH = 256  # images per feature-extraction batch (eval mode; the result does not depend on it)
GROUP_SIZE = 5  # classes per random group the backbone learns (CIFAR-100: 20 groups of 5)


def cache_root() -> Path:
    """$SOFTMAX_STUDY_CACHE, else ~/.cache/softmax-study/frozen; a path that exists but is no folder is one line."""
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV]).expanduser()
        if root.exists() and not root.is_dir():
            raise StudyError(f"${CACHE_ENV}={os.environ[CACHE_ENV]} is not a folder; point it at a folder for the "
                             "frozen-backbone cache, or unset it to use ~/.cache/softmax-study/frozen")
        return root
    return CACHE_HOME / "frozen"


def data_fingerprint(data: Dataset) -> str:
    """sha256 of every array the backbone and the features depend on: another copy of the data, or a changed one,
    gets its own cache entry. The hierarchy enters as each class's top-level group (int64), so that CIFAR-100's
    entries made before data sources existed (which hashed its fine-to-superclass map) are still found."""
    digest = hashlib.sha256()
    top = data.top_groups()
    arrays = (data.train_inputs, data.train_labels, data.test_inputs, data.test_labels)
    for array in arrays + (() if top is None else (top,)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def recipe(cfg: TrainConfig) -> dict:
    """Everything the frozen backbone and its features depend on, besides the data and the code (FEATURES_FORMAT):
    the whole configuration that trains it, and the labels it is trained on. Not the head, its optimiser, the
    trial seed, the subset or the neck: those change what trains on the features, not the features."""
    train = json.loads(json.dumps(asdict(backbone_config(cfg))))
    train["data"].pop("data_dir")  # where the data lives is not what it is: the fingerprint covers that
    train["data"].pop("source")  # nor how it was asked for
    train["run"].pop("device")
    return {"format": FEATURES_FORMAT, "train": train, "labels": cfg.frozen.labels}


def cache_key(cfg: TrainConfig, fingerprint: str) -> str:
    text = json.dumps({"recipe": recipe(cfg), "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def backbone_config(cfg: TrainConfig) -> TrainConfig:
    """The run that trains the backbone: a linear softmax classifier on frozen.labels, the study's own split."""
    f = cfg.frozen
    return TrainConfig(
        data=DataConfig(source=cfg.data.source, data_dir=cfg.data.data_dir, val_size=cfg.data.val_size,
                        split_seed=cfg.data.split_seed),
        model=ModelConfig(backbone=cfg.model.backbone, head="softmax", backbone_knobs=dict(cfg.model.backbone_knobs)),
        optim=OptimConfig(optimizer="sgd", lr=f.lr, batch_size=f.batch_size, epochs=f.epochs),
        run=RunConfig(seed=f.seed, device=cfg.run.device),
    )


def random_groups(num_classes: int, num_groups: int, seed: int) -> np.ndarray:
    """[K] group of each fine class: a seeded random partition into num_groups groups of equal size."""
    order = np.random.default_rng(seed).permutation(num_classes)
    groups = np.empty(num_classes, dtype=np.int64)
    groups[order] = np.arange(num_classes) * num_groups // num_classes
    return groups


def group_count(num_classes: int) -> int:
    """How many random groups the backbone learns: K / GROUP_SIZE, at least 2."""
    return max(2, num_classes // GROUP_SIZE)


def backbone_labels(cfg: TrainConfig, data: Dataset):
    """(label of each training image, label names, number of labels) the backbone is trained on."""
    fine = data.train_labels
    if cfg.frozen.labels == "coarse":
        top = data.top_groups()
        if top is None:
            raise ConfigError(f"frozen.labels='coarse' needs a class hierarchy, which data source '{data.source}' "
                              f"lacks; choose from: {', '.join(name for name in FROZEN_LABELS if name != 'coarse')}")
        names = data.top_group_names()
        return top[fine], names, len(names)
    if cfg.frozen.labels == "random":
        count = group_count(data.num_classes)
        groups = random_groups(data.num_classes, count, cfg.frozen.seed)
        return groups[fine], tuple(f"group{g}" for g in range(count)), count
    return fine, data.class_names, data.num_classes


def backbone_splits(cfg: TrainConfig, data: Dataset) -> Splits:
    """The tuning split's training images with frozen.labels, evaluated on the validation images."""
    train, val = tuning_indices(data.train_labels, cfg.data.val_size, cfg.data.split_seed)
    labels, names, num_classes = backbone_labels(cfg, data)
    info = ClassInfo(num_classes=num_classes, class_counts=tuple(np.bincount(labels[train], minlength=num_classes)),
                     fine_names=names)
    return Splits(data.train_inputs[train], labels[train], data.train_inputs[val], labels[val], "val", info,
                  channel_mean=data.channel_mean, channel_std=data.channel_std)


def label_words(labels: str, num_classes: int) -> str:
    """What the backbone is trained on, in words, for a dataset of num_classes classes."""
    if labels == "random":
        return (f"labels of {group_count(num_classes)} fixed random groups of {GROUP_SIZE} fine classes (no "
                "superclass, tree layout or metric uses them)")
    if labels == "coarse":
        return ("superclass labels (the top level of the data's class hierarchy, the first level of the hierarchical "
                "head's coarse tree: a bias towards it)")
    return f"{num_classes} fine labels (the ones the heads are compared on: a bias towards a softmax readout)"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe(cfg: TrainConfig, num_classes: int) -> str:
    """Which kind of study a configuration makes on a dataset of num_classes classes, and what it does and does
    not measure (for the console, the report and study.json)."""
    from study.backbones import create_backbone

    model = cfg.model
    name = model.backbone + "".join(f"-{v}" for v in model.backbone_knobs.values())
    if not cfg.frozen.enabled:
        return (f"end-to-end study: every head trains the whole {name} backbone with it. It measures each head's "
                "effect on what the network learns, and the head's cost inside a full training step.")
    f = cfg.frozen
    neck = (f", through a trainable {f.neck_width}-unit neck identical for every head" if f.neck_width else "")
    if source_inputs(cfg.data.source) == "features":
        return (f"heads-only study on the feature vectors of {cfg.data.source} ({num_classes} classes): every head "
                f"trains on them{neck}. It measures each head as the classifier on fixed features: accuracy, "
                "calibration and the head's own cost. It does not measure how a head's gradients would shape the "
                "model that made the features.")
    width = create_backbone(model.backbone, **model.backbone_knobs).num_features
    labels = label_words(f.labels, num_classes)
    return (f"frozen-backbone study: {name} trained once ({plural(f.epochs, 'epoch')}, linear softmax on the {labels}, "
            f"training images only), then frozen; every head trains on its {width}-dimensional features{neck}. "
            "It measures each head as the classifier on fixed features: accuracy, calibration and the head's own "
            "cost. It does not measure how a head's gradients would shape a backbone trained with it (the "
            "end-to-end `full` preset does).")


class FeatureCache:
    """One cache entry: the frozen backbone and its features for one recipe and one copy of the data."""

    def __init__(self, cfg: TrainConfig, data: Dataset, root: Path = None, log=print):
        self.cfg, self.data, self.log = cfg, data, log
        self.fingerprint = data_fingerprint(data)
        self.folder = (root or cache_root()) / cache_key(cfg, self.fingerprint)

    def expected_meta(self) -> dict:
        return {"recipe": json.loads(json.dumps(recipe(self.cfg))), "data_fingerprint": self.fingerprint}

    def check_made_for_this_run(self, saved: dict) -> None:
        """ValueError unless a cached file records this run's recipe and data fingerprint."""
        if {k: saved.get(k) for k in self.expected_meta()} != self.expected_meta():
            raise ValueError("its recipe or data fingerprint differs from this run's")

    def load(self, quiet: bool = False):
        """(train features, test features, meta) from the cache, or None when absent; a damaged entry says so
        (unless quiet: a second look, after waiting for another builder, repeats nothing already said)."""
        meta_path = self.folder / META_FILE
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            self.check_made_for_this_run(meta)
            arrays = load_arrays(self.folder / FEATURES_FILE, ("train", "test"))  # never unpickles
            train, test = arrays["train"], arrays["test"]
            shapes_ok = (train.ndim == 2 and train.shape == (len(self.data.train_labels), meta["num_features"])
                         and test.shape == (len(self.data.test_labels), meta["num_features"]))
            if not shapes_ok:
                raise ValueError(f"feature shapes {train.shape} and {test.shape} do not fit the data")
            if not (np.isfinite(train).all() and np.isfinite(test).all()):
                raise ValueError("it holds non-finite features")
            if features_sha256(train, test) != meta.get("features_sha256"):
                raise ValueError("its features do not match the checksum it was saved with")
        except Exception as error:  # truncated zip, bad JSON, missing key or file: all mean the same, rebuild
            if not quiet:
                self.log(f"frozen backbone: cache {self.folder} is unreadable ({type(error).__name__}: {error}); "
                         "rebuilding it")
            return None
        return train, test, meta

    def build(self):
        started = time.time()
        bcfg = backbone_config(self.cfg)
        backbone, trained = self.load_backbone(bcfg)
        if backbone is None:
            backbone, trained = train_backbone(self.cfg, bcfg, self.data, self.log)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / BACKBONE_FILE,
                         lambda p: torch.save({"state_dict": backbone.state_dict(), "trained": trained,
                                               **self.expected_meta()}, p))
        train, test = standardised(backbone, self.data, self.cfg)
        meta = {**self.expected_meta(), "num_features": int(train.shape[1]), "backbone": trained,
                "features_sha256": features_sha256(train, test),
                "built_s": time.time() - started, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / FEATURES_FILE, lambda p: save_arrays(p, train=train, test=test))
        write_atomic(self.folder / META_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))  # marks it whole
        self.log(f"frozen backbone: features of {len(train):,} training and {len(test):,} test images cached in "
                 f"{self.folder} ({meta['built_s']:.0f} s)")
        return train, test, meta

    def load_backbone(self, bcfg: TrainConfig):
        """The cached backbone (and its training record) when its file is whole and matches; else (None, None)."""
        from study.backbones import create_backbone

        path = self.folder / BACKBONE_FILE
        if not path.is_file():
            return None, None
        try:
            saved = load_tensors(path)  # weights-only: a planted object is refused, never built
            self.check_made_for_this_run(saved)
            backbone = create_backbone(bcfg.model.backbone, **bcfg.model.backbone_knobs)
            backbone.load_state_dict(saved["state_dict"])
        except Exception as error:  # see load()
            self.log(f"frozen backbone: {path} is unreadable ({type(error).__name__}: {error}); training it again")
            return None, None
        self.log(f"frozen backbone: reusing the trained backbone in {path}; extracting its features")
        return backbone, saved["trained"]

    def features(self):
        """(train features, test features, meta), from the cache when it holds them, else built and cached. One
        process builds an entry at a time: a second one asking for it waits, then reuses what the first built."""
        cached = self.load()
        if cached is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StudyError(f"frozen backbone: cannot make the cache folder {self.folder} ({error.strerror}); "
                                 f"set ${CACHE_ENV} to a writable folder") from None
            with locks.waiting(self.folder, lambda holder: self.log(
                    f"frozen backbone: {holder} is building {self.folder}; waiting for it, then reusing its files")):
                cached = self.load(quiet=True)  # the process waited for may have built it
                if cached is None:
                    return self.build()
        self.log(f"frozen backbone: reusing the cached features in {self.folder}")
        return cached


def train_backbone(cfg: TrainConfig, bcfg: TrainConfig, data: Dataset, log):
    """Train the backbone to be frozen; returns (backbone in eval mode on the CPU, a record of its training)."""
    from study.trainer import Trainer, fit

    splits = backbone_splits(cfg, data)
    log(f"frozen backbone: training {bcfg.model.backbone} on the {splits.class_info.num_classes} "
        f"{cfg.frozen.labels} labels of {len(splits.train_labels):,} training images for "
        f"{plural(bcfg.optim.epochs, 'epoch')} (once; cached for later runs)")
    started = time.time()
    trainer = Trainer(bcfg, splits)
    history = []
    for metrics in fit(bcfg, trainer=trainer):
        history.append(metrics)
        log(f"  backbone epoch {metrics['epoch']}/{bcfg.optim.epochs}: train loss {metrics['train_loss']:.3f}, "
            f"val acc ({cfg.frozen.labels} labels) {100 * metrics['val_acc']:.1f}%, {metrics['epoch_time_s']:.0f} s")
    backbone = trainer.backbone.to("cpu", memory_format=torch.contiguous_format).eval()
    trained = {"labels": cfg.frozen.labels, "epochs": len(history), "train_s": time.time() - started,
               "val_acc": history[-1].get("val_acc"), "device": str(trainer.device),
               "diverged": bool(history[-1]["diverged"])}
    if trained["diverged"]:
        raise ConfigError(f"the frozen backbone's training diverged (loss {history[-1]['train_loss']}); "
                          f"lower frozen.lr={cfg.frozen.lr}")
    return backbone, trained


@torch.no_grad()
def extract(backbone, images: np.ndarray, device: torch.device, channel_mean, channel_std) -> np.ndarray:
    from study.batches import DeviceBatches

    backbone = backbone.to(device).eval()
    batches = DeviceBatches(images, np.zeros(len(images), dtype=np.int64), device, channel_mean, channel_std,
                            channels_last=True)
    return torch.cat([backbone(x).float().cpu() for x, _ in batches.eval_batches(EXTRACT_BATCH)]).numpy()


def standardised(backbone, data: Dataset, cfg: TrainConfig):
    """Features of every training and test image, standardised with the tuning split's training features' mean and
    standard deviation (never the validation or test images')."""
    from study.trainer import resolve_device

    device = resolve_device(cfg.run.device)
    stats = (data.channel_mean, data.channel_std)
    train, test = (extract(backbone, inputs, device, *stats) for inputs in (data.train_inputs, data.test_inputs))
    fit_rows, _ = tuning_indices(data.train_labels, cfg.data.val_size, cfg.data.split_seed)
    mean, std = train[fit_rows].mean(0), train[fit_rows].std(0)
    # A feature (almost) constant on the training images, e.g. a channel its ReLU never lets through, is centred
    # but not scaled: dividing by its tiny deviation would blow up what held-out images put there.
    std = np.where(std > 1e-4, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def features_sha256(train: np.ndarray, test: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in (train, test):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def frozen_data(cfg: TrainConfig, data: Dataset, root: Path = None, log=print):
    """(the dataset with every image replaced by its frozen-backbone feature vector, labels unchanged; an id of
    those features: cache key and checksum, which study.json records so that later steps use the same ones)."""
    cache = FeatureCache(cfg, data, root, log)
    train, test, meta = cache.features()
    features = replace(data, train_inputs=train, test_inputs=test, channel_mean=None, channel_std=None)
    return features, f"{cache.folder.name}:{meta['features_sha256'][:16]}"


FILE_ID_PREFIX = "sha256:"  # a features file's id (study/inputs.py): its SHA-256


def check_same_features(expected, splits, what: str) -> None:
    """Refuse to go on with features other than those a study was tuned on (a cache entry rebuilt since, or a
    features file changed since)."""
    if expected is None or splits.features_id == expected:
        return
    if expected.startswith(FILE_ID_PREFIX):
        now = (splits.features_id or "none").removeprefix(FILE_ID_PREFIX)
        raise StudyError(f"{what}: the features file has changed since this run was tuned on it (SHA-256 now "
                         f"{now[:16]}..., was {expected.removeprefix(FILE_ID_PREFIX)[:16]}...); put back the file "
                         "it was tuned on, or start a new run")
    raise StudyError(f"{what}: the frozen backbone's features are now {splits.features_id}, not {expected} "
                     f"that this run was tuned on (its cache entry in {cache_root()} was rebuilt or removed); "
                     "restore that entry, or start a new run")
