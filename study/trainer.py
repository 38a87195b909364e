"""The fit/evaluate loop. Knows nothing of Ray: the Tune trainable, analysis and the CLI all drive it the same way.

    python -m study.train --head softmax --backbone resnet12 --epochs 30 --device cuda   (the CLI: study/train.py)
"""
import dataclasses
import functools
import json
import math
import random
import time
from typing import Iterator, Optional

import numpy as np
import torch
from torch import nn

from study.backbones import create_backbone
from study.batches import DeviceBatches, FeatureBatches
from study.config import TrainConfig, validate
from study.errors import ConfigError
from study.neck import Neck
from study.heads import create_head
from study.metrics import accuracy, nll
from study.optim import build_optimizer, build_scheduler
from study.predictions import Compact
from study.splits import Splits
from study.timing import RegionTimer, synchronize


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)  # validate() has checked that a requested GPU is there


def precision(device: torch.device) -> dict:
    """How a device computes: bf16 autocast and cuDNN's autotuner on a GPU (tensor cores); fp32 on the CPU, for
    exactness: bf16 autocast on the CPU (which some CPUs, e.g. with AVX512-BF16, can run natively) was not adopted,
    not having been measured faster for this workload."""
    on_gpu = device.type == "cuda"
    return {"autocast_device": device.type, "autocast_dtype": torch.bfloat16, "autocast": on_gpu,
            "cudnn_benchmark": on_gpu}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


# Evaluation batch per device type. A GPU wants large batches; on a CPU, large batches spill the conv activations
# out of cache. `python -m study.bench.eval --device cpu --threads 2` (10k images; median of 3 runs, of 2 for
# tinyvgg-64): tinyvgg-16 took 4.37 s in batches of 1024, 1.63 s of 128 and 1.63 s of 32; tinyvgg-64 28.7 s at
# 1024, 22.3 s at 128 and 17.9 s at 32.
EVAL_BATCH_SIZE = {"cuda": 1024, "cpu": 32}
# Frozen features have no convolutions to spill out of cache: per-batch overhead dominates, so evaluate in large
# batches. `python -m study.bench.trial --threads 1 --eval-batch-size B` (one thread, as a trial has; 5,000
# validation rows, median of 2 epochs, 2-core Intel Xeon): softmax 0.0118 s at B = 32 and 0.0063 s at 4096,
# sparsemax 0.089 s and 0.029 s; entmax at a searched alpha of 1.3 (bisection) 0.37 s and 0.096 s.
FEATURE_EVAL_BATCH_SIZE = 4096


class Trainer:
    """Owns model, optimizer, schedule and data order for one run; state_dict() is a complete checkpoint."""

    def __init__(self, cfg: TrainConfig, splits: Splits):
        self.cfg = validate(cfg)
        self.device = resolve_device(cfg.run.device)
        self.split_name = splits.eval_split
        self.precision = precision(self.device)
        self.autocast = torch.autocast(self.precision["autocast_device"], dtype=self.precision["autocast_dtype"],
                                       enabled=self.precision["autocast"])
        if self.precision["cudnn_benchmark"]:
            torch.backends.cudnn.benchmark = True
        seed_everything(cfg.run.seed)
        if cfg.frozen.enabled != splits.holds_features:
            raise ConfigError(f"frozen.enabled={cfg.frozen.enabled} but the splits hold "
                              f"{'features' if splits.holds_features else 'images'}; load them with "
                              "study.inputs.load_splits(cfg)")
        if splits.holds_features:  # frozen backbone: the model is the (optional) neck and the head
            backbone = Neck(splits.train_images.shape[1], cfg.frozen.neck_width)
            batches = functools.partial(FeatureBatches, device=self.device)
        else:
            backbone = create_backbone(cfg.model.backbone, **cfg.model.backbone_knobs)
            batches = functools.partial(DeviceBatches, device=self.device, channel_mean=splits.channel_mean,
                                        channel_std=splits.channel_std, channels_last=True)
        self.train_data = batches(splits.train_images, splits.train_labels)
        self.eval_data = batches(splits.eval_images, splits.eval_labels)
        # A final model's validation rows (study/splits.py), evaluated once after training; None while tuning.
        self.val_data = None if splits.val_images is None else batches(splits.val_images, splits.val_labels)
        head = create_head(cfg.model.head, backbone.num_features, splits.class_info.num_classes,
                           class_info=splits.class_info, **cfg.model.head_knobs)
        # channels_last (NHWC) on every device: tensor cores want it, and so do the CPU's oneDNN convolutions
        # (tinyvgg-16 epoch of 5k images, 2 cores, `python -m study.bench.epoch`: 4.19 s and 5.38 s contiguous,
        # 3.36 s and 3.72 s channels_last; BENCHMARKS.md).
        self.model = nn.ModuleDict({"backbone": backbone, "head": head}).to(self.device,
                                                                            memory_format=torch.channels_last)
        self.steps_per_epoch = self.train_data.num_batches(cfg.optim.batch_size)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, self.steps_per_epoch * cfg.optim.epochs, cfg.optim)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)  # data order and augmentation
        self.head_timer = RegionTimer(self.device)
        self.epoch = 0

    @property
    def backbone(self):
        return self.model["backbone"]

    @property
    def head(self):
        return self.model["head"]

    def train_step(self, x, y) -> torch.Tensor:
        with self.autocast:
            features = self.backbone(x)
        # Backward in two parts so the head's forward+backward can be timed on its own: the head sees detached
        # features, and their gradient is then pushed through the backbone. The gradients are the same.
        # Without a trainable backbone (frozen features, no neck) there is no gradient to push back, and computing
        # one w.r.t. the features would only add to the head's timed cost.
        detached = features.detach().requires_grad_(features.requires_grad)
        self.head_timer.start()
        with self.autocast:
            loss = self.head.loss(detached, y)
        loss.backward()
        self.head_timer.stop()
        if features.requires_grad:
            features.backward(detached.grad)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def train_epoch(self) -> dict:
        self.model.train()
        self.head.on_epoch_start(self.epoch, self.cfg.optim.epochs)
        self.head_timer.reset()
        loss_sum = torch.zeros((), device=self.device)
        synchronize(self.device)
        started = time.perf_counter()
        batches = self.train_data.train_batches(self.cfg.optim.batch_size, self.generator, self.cfg.data.augment)
        for x, y in batches:
            loss_sum += self.train_step(x, y)  # stays on the device: no host sync per step
        synchronize(self.device)
        epoch_time = time.perf_counter() - started
        self.epoch += 1
        return {
            "train_loss": loss_sum.item() / self.steps_per_epoch,
            "epoch_time_s": epoch_time,
            "head_time_s": self.head_timer.seconds(),
            "images_per_s": len(self.train_data) / epoch_time,
        }

    @torch.no_grad()
    def evaluate(self, data=None) -> Compact:
        """The evaluation split's compact predictions (study/predictions.py), or those of `data` (a final model's
        val_data), batch by batch: no [N, K] array of the whole split is ever held."""
        self.model.eval()
        parts = []
        own_ranking = not self.head.ranks_by_log_probs
        default = FEATURE_EVAL_BATCH_SIZE if self.cfg.frozen.enabled else EVAL_BATCH_SIZE[self.device.type]
        batch_size = self.cfg.run.eval_batch_size or default
        for x, y in (self.eval_data if data is None else data).eval_batches(batch_size):
            with self.autocast:
                features = self.backbone(x)
                log_probs = self.head.log_probs(features).float().cpu().numpy()
                scores = self.head.scores(features).float().cpu().numpy() if own_ranking else None
            parts.append(Compact.of(log_probs, y.cpu().numpy(), scores))
        return Compact.concat(parts)

    def validation_metrics(self) -> dict:
        """A final model's validation loss and accuracy (its val_data, scored once after training)."""
        validation = self.evaluate(self.val_data)
        return {"val_loss": nll(validation), "val_acc": accuracy(validation)}

    def eval_metrics(self, evaluation: Compact) -> dict:
        return {
            f"{self.split_name}_loss": nll(evaluation),
            f"{self.split_name}_acc": accuracy(evaluation),
        }

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            # The model's configuration as plain values: two models can share every parameter shape (e.g. two
            # hierarchical trees over the same classes), so shapes alone do not say a checkpoint is this model's.
            "model_config": json.loads(json.dumps(dataclasses.asdict(self.cfg.model))),
        }

    def load_state_dict(self, state: dict) -> None:
        expected = json.loads(json.dumps(dataclasses.asdict(self.cfg.model)))
        if state.get("model_config", expected) != expected:  # checkpoints made before this field: shapes only
            raise ConfigError(f"the checkpoint was saved by another model ({state['model_config']}), not "
                              f"{expected}; start a new run")
        mine, saved = self.model.state_dict(), state["model"]
        differing = sorted(name for name in mine.keys() | saved.keys()
                           if name not in mine or name not in saved or mine[name].shape != saved[name].shape)
        if differing:  # saved by another version of a head or backbone whose parameters have changed
            raise ConfigError(f"the checkpoint does not fit {self.cfg.model.head} + {self.cfg.model.backbone} as "
                              f"built now (parameters differ: {', '.join(differing[:3])}); it was saved by another "
                              "version of the code: start a new run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def fit(cfg: TrainConfig, splits: Optional[Splits] = None, trainer: Optional[Trainer] = None) -> Iterator[dict]:
    """Train to cfg.optim.epochs, yielding one metrics dict per epoch. Pass `trainer` to resume from its epoch.

    While tuning, every epoch is evaluated on the validation split. A final model (cfg.data.final) is not
    evaluated here: its caller evaluates the test split and the validation rows once each, after training.

    Stops after an epoch whose training loss is not finite, yielding it with diverged=True: more epochs of NaN
    weights would only waste the budget.
    """
    if trainer is None:
        if splits is None:
            raise TypeError("fit() needs the splits to train on (study.inputs.load_splits) or a Trainer to resume")
        trainer = Trainer(cfg, splits)
    while trainer.epoch < cfg.optim.epochs:
        metrics = trainer.train_epoch()
        if not cfg.data.final:  # the test split of a final model is evaluated once, by the caller, at the end
            eval_started = time.perf_counter()
            metrics.update(trainer.eval_metrics(trainer.evaluate()))
            metrics["eval_time_s"] = time.perf_counter() - eval_started
        metrics["epoch"] = trainer.epoch
        metrics["diverged"] = not math.isfinite(metrics["train_loss"])
        yield metrics
        if metrics["diverged"]:
            return

