"""Frozen-backbone studies: one backbone trained once, frozen, and its features cached for every head to train on.
This module is the cache entry and the features' identity; the backbone's recipe and labels are in
study/backbone_recipe.py, its training and feature extraction in study/backbone_training.py, and the words that
describe a study's kind in study/study_kind.py.

Why: on a CPU, training the whole CNN for 9 heads x many trials x several seeds cannot reach real accuracy in
minutes; training one backbone (the `frozen` preset's tinyvgg-16: about 2 minutes on 2 cores, caching its features
included; README, Results) and every head on its features (seconds per trial) can.

The recipe (config.FrozenConfig): model.backbone is trained with a linear softmax classifier on `frozen.labels`
(by default K/5 fixed random groups of 5 classes, at least 2 groups, sizes as even as K allows: CIFAR-100 20, a
20-class folder 4; which no head, tree layout or metric knows) using the tuning split's training images only, so
validation and test images are never seen; SGD-Nesterov, one-cycle, random crop and flip. It is then frozen in eval
mode. Its features are global-average-pooled activations of unaugmented images,
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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from study import locks
from study.backbone_recipe import backbone_config, recipe
from study.backbone_training import standardised, train_backbone
from study.config import TrainConfig
from study.errors import StudyError
from study.files import CACHE_HOME, load_arrays, load_tensors, save_arrays, write_atomic
from study.sources.dataset import Dataset

CACHE_ENV = "SOFTMAX_STUDY_CACHE"
META_FILE, FEATURES_FILE, BACKBONE_FILE = "meta.json", "features.npz", "backbone.pt"


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


def cache_key(cfg: TrainConfig, fingerprint: str) -> str:
    text = json.dumps({"recipe": recipe(cfg), "data": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
