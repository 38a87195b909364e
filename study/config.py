"""Frozen configuration objects, built once at the top of a run and saved next to its results.

Every field has a default that is a sensible ResNet-12 recipe; a run changes only what it names.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from study.errors import ConfigError
from study.registry import TYPE_WORDS as KNOB_TYPE_WORDS, fits

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine")
DEVICES = ("auto", "cpu", "cuda")
FROZEN_LABELS = ("random", "coarse", "fine")


@dataclass(frozen=True)
class DataConfig:
    source: str = "cifar100"  # a data source (study/sources/): NAME or NAME:ARGUMENT
    data_dir: Optional[str] = None  # cifar100's folder; None: $SOFTMAX_STUDY_DATA, then ~/.cache/softmax-study
    # Training examples held out (stratified) to tune on; None: a share of them (study/splits.py: VAL_SHARE).
    val_size: Optional[int] = 5000
    subset: Optional[int] = None  # train on a stratified subset of this many examples (quick runs)
    split_seed: int = 0  # fixes the val split and the subset, identical for every trial so trials compare
    final: bool = False  # a final model: the tuning split's training rows, evaluated on test (and val) once
    augment: bool = True  # random crop (4 px padding) + horizontal flip
    allow_download: bool = True
    # Side in pixels every image is resized to (imagefolder; cifar100's images are 32 x 32 and take only 32).
    image_size: int = 32
    # imagefolder: leave out files that do not decode (counted on the console and in study.json) instead of refusing
    # the folder in one line naming the first of them.
    skip_bad_images: bool = False


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet12"
    head: str = "softmax"
    backbone_knobs: Mapping[str, Any] = field(default_factory=dict)
    head_knobs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "sgd"  # sgd = SGD with Nesterov momentum; adamw
    lr: float = 0.2  # peak learning rate for one batch of batch_size images
    momentum: float = 0.9  # SGD momentum; AdamW beta1
    weight_decay: float = 5e-4  # on conv/linear weights only; norms and biases are not decayed
    schedule: str = "onecycle"  # onecycle: linear warm-up then linear decay to 0; cosine: warm-up then cosine
    warmup_fraction: float = 0.15  # share of all steps spent warming up
    batch_size: int = 512  # images per step
    epochs: int = 30


@dataclass(frozen=True)
class FrozenConfig:
    """A frozen-backbone study (study/frozen.py): model.backbone is trained once with this recipe, frozen, and every
    head trains on its cached features. Off (the default): every head trains the whole CNN, end to end."""
    enabled: bool = False
    # What the backbone learns to tell apart. random: K/5 (rounded down, at least 2) fixed random groups of 5
    # classes, or as near 5 as K allows (drawn with `seed`; CIFAR-100: 20; 20 classes: 4), which no head, tree
    # layout or metric knows, so the features favour none of them; coarse: the top level of the data's hierarchy
    # (CIFAR-100's 20 superclasses), the first level of the hierarchical head's `coarse` tree (a bias towards that
    # layout); fine: the K labels the heads are compared on (a bias towards the softmax classifier the backbone was
    # trained with).
    labels: str = "random"
    epochs: int = 6
    lr: float = 0.2  # peak SGD-Nesterov learning rate of the one-cycle schedule
    batch_size: int = 128
    seed: int = 0  # the backbone's own seed: one backbone for every trial and final seed
    # Width of a trainable Linear-BatchNorm-ReLU between the features and the head, trained with each head and
    # identical for all; 0 feeds the features to the head directly.
    neck_width: int = 0


@dataclass(frozen=True)
class RunConfig:
    seed: int = 0  # model init, data order, augmentation and head noise
    device: str = "auto"  # auto: cuda when visible, else cpu
    # Images (or feature rows) per evaluation batch; None picks per device, or large batches for frozen features
    # (study/trainer.py: EVAL_BATCH_SIZE, FEATURE_EVAL_BATCH_SIZE). Evaluation does not change the model, so this
    # only affects speed.
    eval_batch_size: Optional[int] = None


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    frozen: FrozenConfig = field(default_factory=FrozenConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainConfig":
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(sections))
        if unknown:
            raise ConfigError(f"unknown config section '{unknown[0]}'; choose from: {', '.join(sections)}")
        return cls(**{name: section_from_dict(SECTION_TYPES[name], values.get(name, {})) for name in sections})

    def replace(self, **dotted) -> "TrainConfig":
        """Copy with fields changed by dotted name, e.g. cfg.replace(**{"optim.lr": 0.1})."""
        values = self.to_dict()
        for key, value in dotted.items():
            section, _, name = key.partition(".")
            if section not in values or name not in values[section]:
                raise ConfigError(f"unknown config field '{key}'")
            values[section][name] = value
        return TrainConfig.from_dict(values)


SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "run": RunConfig,
                 "frozen": FrozenConfig}


def section_from_dict(section_type, values: Mapping):
    names = [f.name for f in dataclasses.fields(section_type)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown {section_type.__name__} field '{unknown[0]}'; choose from: {', '.join(names)}")
    for f in dataclasses.fields(section_type):
        if f.name in values and not of_type(values[f.name], f.type):
            section = next(name for name, kind in SECTION_TYPES.items() if kind is section_type)
            raise ConfigError(f"{section}.{f.name}={values[f.name]!r} is not valid; it takes {TYPE_WORDS[f.type]}")
    return section_type(**values)


# What each field's annotation takes, in words; a configuration read from a file (study.json, a saved model's
# record) is checked against it before any value is used, by the same check as the registries' knobs.
TYPE_WORDS = {**{kind: KNOB_TYPE_WORDS[kind] for kind in (int, float, bool, str)},
              Optional[int]: f"{KNOB_TYPE_WORDS[int]} or null", Optional[str]: f"{KNOB_TYPE_WORDS[str]} or null",
              Mapping[str, Any]: "a mapping of names to values"}


def of_type(value, annotation) -> bool:
    if annotation in (Optional[int], Optional[str]):
        return value is None or of_type(value, annotation.__args__[0])
    if annotation == Mapping[str, Any]:
        return isinstance(value, Mapping)
    return value is not None and fits(value, annotation, default=None)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Raise ConfigError (one line, naming the value and what is valid) for anything a run would trip over later."""
    from study.backbones import BACKBONES
    from study.heads import check_head_knobs
    from study.sources import source_inputs

    o, d, r, f = cfg.optim, cfg.data, cfg.run, cfg.frozen
    checks = [
        (o.epochs >= 1, f"epochs={o.epochs} must be >= 1"),
        (o.lr > 0, f"lr={o.lr} must be > 0"),
        (o.batch_size >= 2, f"batch_size={o.batch_size} must be >= 2 (batch norm needs two images)"),
        (o.weight_decay >= 0, f"weight_decay={o.weight_decay} must be >= 0"),
        (0 <= o.momentum < 1, f"momentum={o.momentum} must be in [0, 1)"),
        (0 <= o.warmup_fraction < 1, f"warmup_fraction={o.warmup_fraction} must be in [0, 1)"),
        (o.optimizer in OPTIMIZERS, f"unknown optimizer '{o.optimizer}'; choose from: {', '.join(OPTIMIZERS)}"),
        (o.schedule in SCHEDULES, f"unknown schedule '{o.schedule}'; choose from: {', '.join(SCHEDULES)}"),
        (r.device in DEVICES, f"unknown device '{r.device}'; choose from: {', '.join(DEVICES)}"),
        (d.subset is None or d.subset >= 1, f"subset={d.subset} must be >= 1"),
        (d.val_size is None or d.val_size >= 1, f"val_size={d.val_size} must be >= 1 (or null: a share)"),
        (d.image_size >= 1, f"image_size={d.image_size} must be >= 1"),
        (r.eval_batch_size is None or r.eval_batch_size >= 1, f"eval_batch_size={r.eval_batch_size} must be >= 1"),
        (0 <= r.seed < 2 ** 32, f"seed={r.seed} must be between 0 and {2 ** 32 - 1}"),
        (0 <= f.seed < 2 ** 32, f"frozen.seed={f.seed} must be between 0 and {2 ** 32 - 1}"),
        (f.labels in FROZEN_LABELS, f"unknown frozen.labels '{f.labels}'; choose from: {', '.join(FROZEN_LABELS)}"),
        (f.epochs >= 1, f"frozen.epochs={f.epochs} must be >= 1"),
        (f.lr > 0, f"frozen.lr={f.lr} must be > 0"),
        (f.batch_size >= 2, f"frozen.batch_size={f.batch_size} must be >= 2 (batch norm needs two images)"),
        (f.neck_width >= 0, f"frozen.neck_width={f.neck_width} must be >= 0 (0: no neck)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if r.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is visible; choose from: cpu, auto")
    if source_inputs(d.source) == "features" and not f.enabled:
        raise ConfigError(f"data source '{d.source}' holds feature vectors, which only a heads-only study trains on: "
                          "set frozen.enabled (the frozen presets do)")
    BACKBONES.get(cfg.model.backbone)
    BACKBONES.check_knobs(cfg.model.backbone, dict(cfg.model.backbone_knobs))
    check_head_knobs(cfg.model.head, dict(cfg.model.head_knobs))
    return cfg


def with_sampled(base: TrainConfig, sampled: Mapping[str, Any]) -> TrainConfig:
    """Apply a search space's flat values: OptimConfig field names set the optimiser, anything else a head knob."""
    optim_fields = {f.name for f in dataclasses.fields(OptimConfig)}
    from study.heads import head_knobs

    knobs, dotted = dict(base.model.head_knobs), {}
    valid_knobs = head_knobs(base.model.head)
    for name, value in sampled.items():
        if name in optim_fields:
            dotted[f"optim.{name}"] = value
        elif name in valid_knobs:
            knobs[name] = value
        else:
            raise ConfigError(f"sampled parameter '{name}' is neither an optimiser field nor a knob of head "
                              f"'{base.model.head}'; knobs: {', '.join(valid_knobs) or '(none)'}")
    return validate(base.replace(**dotted, **{"model.head_knobs": knobs}))
