"""The training loop on tiny fake data: every head trains, runs are reproducible and resumable, the CLI behaves."""
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from study.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from study.sources.cifar100 import load_cifar100
from study.errors import ConfigError
from study.heads import list_heads
from study.splits import make_splits
from study.trainer import Trainer, fit
from study.train import main as train_main

from conftest import assert_one_line_error

EPOCH_KEYS = {"train_loss", "val_loss", "val_acc", "epoch_time_s", "head_time_s", "images_per_s", "eval_time_s",
              "epoch",
              "diverged"}


def tiny_config(head="softmax", epochs=1, **head_knobs):
    return TrainConfig(
        data=DataConfig(val_size=100),
        model=ModelConfig(backbone="tinyvgg", head=head, backbone_knobs={"width": 8}, head_knobs=head_knobs),
        optim=OptimConfig(lr=0.05, batch_size=64, epochs=epochs),
        run=RunConfig(seed=0, device="cpu"),
    )


@pytest.fixture(scope="module")
def splits(fake_data_dir):
    return make_splits(load_cifar100(str(fake_data_dir)), val_size=100)


@pytest.mark.parametrize("head", list_heads())
def test_every_head_trains_an_epoch(head, splits):
    (metrics,) = list(fit(tiny_config(head), splits))
    assert set(metrics) == EPOCH_KEYS
    assert not metrics["diverged"] and math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    assert 0 < metrics["head_time_s"] < metrics["epoch_time_s"]
    assert 0.0 <= metrics["val_acc"] <= 1.0


def test_same_seed_same_metrics_on_cpu(splits):
    timing = {"epoch_time_s", "head_time_s", "images_per_s", "eval_time_s"}
    def strip(runs):
        return [{k: v for k, v in m.items() if k not in timing} for m in runs]

    a = strip(fit(tiny_config(epochs=2), splits))
    b = strip(fit(tiny_config(epochs=2), splits))
    assert a == b
    c = strip(fit(tiny_config(epochs=2).replace(**{"run.seed": 1}), splits))
    assert a != c


def test_resume_from_state_dict_matches_an_uninterrupted_run(splits):
    cfg = tiny_config("gumbel", epochs=2, tau=2.0, tau_final=0.5)
    straight = list(fit(cfg, splits))[-1]
    first = Trainer(cfg, splits)
    first.train_epoch()
    state = first.state_dict()
    resumed = Trainer(cfg, splits)
    resumed.load_state_dict(state)
    (last,) = list(fit(cfg, trainer=resumed))
    assert last["epoch"] == 2
    assert last["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-6)
    assert last["val_acc"] == straight["val_acc"]


def test_checkpoint_of_another_model_shape_is_refused_in_one_line(splits):
    # e.g. a hierarchical checkpoint saved by older code, whose head padded every node to the widest (a [nodes,
    # width - 1, d] weight), resumed by newer code; older checkpoints carry no model_config, only shapes
    state = Trainer(tiny_config("hierarchical", branching=3), splits).state_dict()
    del state["model_config"]
    d = state["model"]["head.weight"].shape[-1]
    state["model"]["head.weight"], state["model"]["head.bias"] = torch.zeros(5, 2, d), torch.zeros(5, 2)
    with pytest.raises(ConfigError, match=r"^the checkpoint does not fit hierarchical \+ tinyvgg .*head\.bias.*"
                                          "start a new run$"):
        Trainer(tiny_config("hierarchical", branching=3), splits).load_state_dict(state)


def test_checkpoint_of_another_model_with_the_same_shapes_is_refused(splits):
    # Two trees over the same classes have the same (K - 1)(d + 1) parameters: the configuration tells them apart
    state = Trainer(tiny_config("hierarchical", branching=3), splits).state_dict()
    with pytest.raises(ConfigError, match=r"^the checkpoint was saved by another model .*'branching': 3.*"
                                          "start a new run$"):
        Trainer(tiny_config("hierarchical", branching=2), splits).load_state_dict(state)


def test_divergence_stops_the_run(splits):
    cfg = tiny_config("naive_softmax", epochs=3).replace(**{"optim.lr": 1e6})
    runs = list(fit(cfg, splits))
    assert runs[-1]["diverged"] and len(runs) < 3


@pytest.mark.parametrize("field,value,message", [
    ("optim.epochs", 0, "epochs=0 must be >= 1"),
    ("optim.lr", -0.1, "lr=-0.1 must be > 0"),
    ("model.head", "bogus", "unknown head 'bogus'; choose from:"),
    ("model.backbone", "bogus", "unknown backbone 'bogus'; choose from:"),
    ("optim.optimizer", "lbfgs", "unknown optimizer 'lbfgs'; choose from: sgd, adamw"),
])
def test_config_errors_name_the_value(field, value, message, splits):
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_config().replace(**{field: value}), splits)


def test_config_round_trips_through_a_dict():
    cfg = tiny_config("hierarchical", layout="coarse")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown config field 'optim.speed'"):
        cfg.replace(**{"optim.speed": 1})


def run_cli(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "study.train", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_prints_epochs_then_json(fake_data_dir):
    result = run_cli("--head", "hierarchical", "--head-knob", "layout=coarse", "--backbone", "tinyvgg",
                     "--backbone-knob", "width=8", "--epochs", "2", "--batch-size", "64", "--device", "cpu",
                     "--val-size", "100",
                     "--data-dir", str(fake_data_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    # The coarse layout takes its shape from the data's superclasses: the head says the branching goes unused.
    assert lines[1] == ("hierarchical head: tree layout coarse (the data's 20 superclasses set the shape; "
                        "branching=2 is unused)")
    assert lines[2].startswith("epoch   1/2") and lines[3].startswith("epoch   2/2")
    final = json.loads(lines[-1])
    assert final["head"] == "hierarchical" and final["epoch"] == 2 and 0 <= final["val_acc"] <= 1


def test_cli_bad_input_in_a_real_process(fake_data_dir):
    result = run_cli("--head", "bogus", "--epochs", "1", "--device", "cpu", "--data-dir", str(fake_data_dir))
    assert_one_line_error(result.returncode, result.stderr, "unknown head 'bogus'; choose from: adaptive, entmax")


@pytest.mark.parametrize("stop,code,started_with_sigint_ignored", [
    ("SIGTERM", 143, False), ("SIGHUP", 129, False), ("SIGINT", 130, False),
    ("SIGTERM", 143, True),  # `cmd &` in a script without job control, or nohup: SIGINT arrives ignored
])
def test_cli_stop_signals_end_the_run_cleanly(stop, code, started_with_sigint_ignored, fake_data_dir):
    """Without Ray too: a stop signal mid-training ends the command with 128 + its number and one line, also when
    the command was started with SIGINT ignored (the stop signals are turned into a SIGINT)."""
    import signal

    def ignore_sigint():
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen([sys.executable, "-m", "study.train", "--backbone", "tinyvgg", "--backbone-knob",
                                "width=8", "--epochs", "500", "--batch-size", "64", "--device", "cpu",
                                "--val-size", "100", "--data-dir", str(fake_data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=ignore_sigint if started_with_sigint_ignored else None)
    assert process.stdout.readline().startswith("tinyvgg + softmax head")  # set up, about to train
    assert process.stdout.readline().startswith("epoch   1/500")
    process.send_signal(getattr(signal, stop))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert stderr.strip() == "interrupted"


def test_cli_corrupt_pickle_is_one_line(tmp_path, cli_error):
    from fake_cifar import write_fake_cifar100

    root = write_fake_cifar100(tmp_path)
    (root / "cifar-100-python" / "train").write_bytes(b"\x80\x04garbage")
    code, stderr = cli_error(train_main, "--backbone", "tinyvgg", "--epochs", "1", "--device", "cpu",
                             "--data-dir", str(root))
    assert_one_line_error(code, stderr, "truncated or corrupt")


PLUGIN_DIR = Path(__file__).resolve().parent / "plugins"


@pytest.mark.parametrize("module,message", [
    ("no_such_plugin", "(ModuleNotFoundError: No module named 'no_such_plugin')"),
    ("broken_plugin", "(RuntimeError: this plugin is broken on purpose)"),
])
def test_cli_bad_plugin_is_one_line(module, message, fake_data_dir):
    pythonpath = os.pathsep.join(filter(None, [str(PLUGIN_DIR), os.environ.get("PYTHONPATH")]))
    result = run_cli("--epochs", "1", "--device", "cpu", "--data-dir", str(fake_data_dir),
                     env_extra={"SOFTMAX_STUDY_PLUGINS": module, "PYTHONPATH": pythonpath})
    assert_one_line_error(result.returncode, result.stderr,
                          f"$SOFTMAX_STUDY_PLUGINS names module '{module}', which cannot be imported {message}")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only error")
def test_cli_cuda_on_cpu_machine_is_one_line(fake_data_dir, cli_error):
    code, stderr = cli_error(train_main, "--device", "cuda", "--epochs", "1", "--data-dir", str(fake_data_dir),
                             "--val-size", "100")
    assert_one_line_error(code, stderr, "no CUDA GPU is visible")


def test_cli_final_reports_validation_and_test_metrics_once(fake_data_dir):
    """A final model trains on the tuning split's 500 training images and is scored once, after training, on the
    100 validation and the 200 test images."""
    result = run_cli("--backbone", "tinyvgg", "--backbone-knob", "width=8", "--epochs", "2", "--batch-size", "64",
                     "--device", "cpu", "--final", "--val-size", "100", "--data-dir", str(fake_data_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "500 training images, 200 test images" in lines[0]
    assert not any("_acc" in line for line in lines[1:3])  # no evaluation during training
    assert lines[-2].startswith("val_loss ") and " test_acc " in lines[-2]
    final = json.loads(lines[-1])
    assert 0 <= final["test_acc"] <= 1 and 0 <= final["val_acc"] <= 1


@pytest.mark.parametrize("head", ["sparsemax", "entmax", "softmax"])
def test_saved_predictions_carry_the_models_ranking(head, splits, tmp_path):
    """Sparse heads tie every zero-probability class; their compact predictions are ranked by the scores that order
    them, and save and load back unchanged."""
    from analysis import retrain
    from study.predictions import ARRAYS, Compact

    cfg = tiny_config(head)
    trainer = Trainer(cfg, splits)
    evaluation = trainer.evaluate()
    retrain.save(tmp_path, retrain.Job(head, 1, cfg), evaluation, {"history": []}, timed_alone=True)
    saved = retrain.load_predictions(tmp_path, head, 1)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(saved.compact, name), getattr(evaluation, name))
    assert (saved.compact.num_classes, saved.compact.finite) == (evaluation.num_classes, evaluation.finite)
    assert saved.record["timed_alone"] is True
    with torch.no_grad():  # the full outputs, straight from the model
        features = trainer.backbone(trainer.eval_data.normalise(trainer.eval_data.images))
        log_probs = trainer.head.log_probs(features).numpy()
        scores = None if trainer.head.ranks_by_log_probs else trainer.head.scores(features).numpy()
    assert (scores is None) == (head == "softmax")
    expected = Compact.of(log_probs, splits.eval_labels, scores)
    np.testing.assert_array_equal(saved.compact.predicted, expected.predicted)
    np.testing.assert_array_equal(saved.compact.top_classes, expected.top_classes)


class FakeTuneSession:
    """Stands in for ray.tune's session calls inside a function trainable: records reports, keeps checkpoints."""

    def __init__(self, folder, checkpoint=None):
        self.folder, self.reports, self.checkpoints, self.resume_from = folder, [], [], checkpoint

    class Checkpoint:
        def __init__(self, path):
            self.path = path

        @classmethod
        def from_directory(cls, folder):
            return cls(folder)

        @contextlib.contextmanager
        def as_directory(self):
            yield self.path

    def get_checkpoint(self):
        return self.resume_from

    def report(self, metrics, checkpoint=None):
        self.reports.append(metrics)
        if checkpoint is not None:  # the trainable's folder is temporary: keep a copy, as Ray does
            kept = Path(self.folder) / f"checkpoint_{len(self.reports)}"
            shutil.copytree(checkpoint.path, kept)
            self.checkpoints.append(self.Checkpoint(kept))


def test_a_trial_resumed_from_its_ray_checkpoint_continues_where_it_stopped(splits, tmp_path, monkeypatch):
    """The Tune trainable, restarted with the checkpoint of epoch 1, reports epochs 2 and 3 exactly as an
    uninterrupted trial does."""
    from study.search import trainable

    config, base = {"lr": 0.05, "weight_decay": 1e-4}, tiny_config(epochs=3)  # Tune's config: the sampled values
    straight = FakeTuneSession(tmp_path / "straight")
    monkeypatch.setattr(trainable, "tune", straight)
    trainable.train_trial(config, splits, base, checkpoint_every=1)
    assert [m["epoch"] for m in straight.reports] == [1, 2, 3] and len(straight.checkpoints) == 2  # none at the end

    resumed = FakeTuneSession(tmp_path / "resumed", checkpoint=straight.checkpoints[0])  # saved after epoch 1
    monkeypatch.setattr(trainable, "tune", resumed)
    # Restored as a run made by older code is: its Tune config also holds the base configuration.
    legacy = {**config, trainable.LEGACY_BASE_KEY: base.to_dict()}
    trainable.train_trial(legacy, splits, base, checkpoint_every=1)
    assert [m["epoch"] for m in resumed.reports] == [2, 3]
    for after, before in zip(resumed.reports, straight.reports[1:]):
        assert after["train_loss"] == pytest.approx(before["train_loss"], rel=1e-6)
        assert after["val_acc"] == before["val_acc"]


def test_cuda_region_timer_with_fake_events():
    """The GPU path of RegionTimer on a CPU: events recorded at start/stop, read once (after one synchronize) and
    summed from milliseconds to seconds."""
    import torch

    from study.timing import RegionTimer

    clock = iter([0.0, 12.5, 20.0, 27.5])  # ms at each record(): regions of 12.5 ms and 7.5 ms
    syncs = []

    class FakeEvent:
        def record(self):
            self.at = next(clock)

        def elapsed_time(self, end):
            return end.at - self.at

    timer = RegionTimer(torch.device("cuda"), event=FakeEvent, synchronize=lambda: syncs.append(1))
    for _ in range(2):
        timer.start()
        timer.stop()
    assert syncs == []  # nothing waits on the GPU until the time is read
    assert timer.seconds() == pytest.approx(0.020) and syncs == [1]
    timer.reset()
    assert timer.seconds() == 0


def test_a_cuda_run_computes_in_bf16_with_cudnn_autotuning_and_a_cpu_run_in_fp32():
    import torch

    from study.trainer import precision

    gpu, cpu = precision(torch.device("cuda", 0)), precision(torch.device("cpu"))
    assert gpu == {"autocast_device": "cuda", "autocast_dtype": torch.bfloat16, "autocast": True,
                   "cudnn_benchmark": True}
    assert cpu["autocast"] is False and cpu["cudnn_benchmark"] is False
    from study.trainer import resolve_device

    assert resolve_device("cuda") == torch.device("cuda")  # what a GPU trial's configuration names
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")

