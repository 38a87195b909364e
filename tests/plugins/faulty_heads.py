"""Heads that fail on purpose, loaded through $SOFTMAX_STUDY_PLUGINS by tests of the study's fault handling."""
import os
import signal
from pathlib import Path

import torch.nn.functional as F

from study.heads import register_head
from study.heads.base import LinearHead


class CrossEntropyHead(LinearHead):
    def loss(self, h, y):
        return F.cross_entropy(self.linear(h), y)

    def log_probs(self, h):
        return F.log_softmax(self.linear(h).float(), dim=-1)


@register_head("test_nan")
class NanHead(CrossEntropyHead):
    """Its loss is NaN from the first step on: every trial diverges."""

    def loss(self, h, y):
        return super().loss(h, y) * float("nan")


@register_head("test_crash_once")
class CrashOnceHead(CrossEntropyHead):
    """The first trial to build it (per marker folder) crashes; Ray's retry of that trial then succeeds."""

    def __init__(self, in_features, num_classes, class_info=None):
        marker = Path(os.environ["FAULTY_HEADS_MARKERS"]) / "crashed"
        if not marker.exists():
            marker.touch()
            raise RuntimeError("injected crash while building the head")
        super().__init__(in_features, num_classes, class_info)


@register_head("test_killed_once")
class KilledOnceHead(CrossEntropyHead):
    """The first trial to reach its second epoch (per marker folder) is killed with SIGKILL, as by the OOM killer or
    `kill -9`: no exception, no clean-up. Ray restarts that trial from its checkpoint of epoch 1."""

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        marker = Path(os.environ["FAULTY_HEADS_MARKERS"]) / "killed"
        if epoch == 1 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
