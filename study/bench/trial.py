"""Where a frozen-backbone trial's time goes: its training epochs, its per-epoch validation, and their arithmetic.

    python -m study.bench.trial --head softmax --epochs 6
    python -m study.bench.trial --head entmax --eval-batch-size 32 --threads 1
    python -m study.bench.trial --head entmax --head-knob alpha=1.3 --threads 1   (entmax's bisection)

A trial of the default `frozen` preset, on random features of the same shape (45,000 training and 5,000 validation
rows of tinyvgg-16's width, 100 classes; timing needs no real features): the real Trainer, neck and head, batch 512.
Prints each epoch's training and validation seconds, then one JSON line with their medians over the epochs after
the first (warm-up), the training step's arithmetic (multiply-adds of the neck and of a dense K-way output layer,
forward and backward) and the CPU model and instruction sets the figures were measured on.
"""
import json
import time

import numpy as np

from study import cli
from study.class_info import ClassInfo
from study.config import validate
from study.presets import PRESETS
from study.splits import Splits


def feature_splits(rows: int, val_rows: int, width: int, classes: int, seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)
    info = ClassInfo(num_classes=classes, coarse_of_fine=tuple(k % 20 for k in range(classes)),
                     class_embeddings=rng.normal(size=(classes, 8)))
    return Splits(rng.standard_normal((rows, width), dtype=np.float32), rng.integers(0, classes, rows),
                  rng.standard_normal((val_rows, width), dtype=np.float32), rng.integers(0, classes, val_rows),
                  "val", info)


def step_gflop(batch: int, width: int, neck: int, classes: int) -> float:
    """GFLOP of one training step's matrix products: neck (width -> neck) and a dense output layer (neck -> K), each
    2 FLOP per multiply-add, forward (1x) and backward (2x: input and weight gradients), the neck's input gradient
    excepted (the features are frozen)."""
    neck_fma = batch * width * neck * 2  # forward and weight gradient
    head_fma = batch * (neck or width) * classes * 3
    return 2 * (neck_fma + head_fma) / 1e9


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.bench.trial", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head", default="softmax")
    p.add_argument("--head-knob", action="append", metavar="NAME=VALUE",
                   help="the head's knob, e.g. --head-knob alpha=1.3 (default: the head's defaults)")
    p.add_argument("--epochs", type=cli.whole(2), default=6)
    p.add_argument("--rows", type=cli.whole(2), default=45000, help="training rows per epoch")
    p.add_argument("--val-rows", type=cli.whole(1), default=5000, help="validation rows evaluated after each epoch")
    p.add_argument("--classes", type=cli.whole(2), default=100)
    p.add_argument("--eval-batch-size", type=cli.whole(1), help="rows per validation batch (default: the trainer's)")
    p.add_argument("--threads", type=cli.whole(1), help="torch intra-op threads (default: torch's, one per core)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    import torch

    from study.backbones import create_backbone
    from study.timing import describe_device
    from study.trainer import Trainer

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base = PRESETS["frozen"].train
    width = create_backbone(base.model.backbone, **base.model.backbone_knobs).num_features
    cfg = validate(base.replace(**{"model.head": args.head, "optim.epochs": args.epochs,
                                   "model.head_knobs": cli.parse_knobs(args.head_knob, "--head-knob"),
                                   "run.device": "cpu", "run.eval_batch_size": args.eval_batch_size}))
    trainer = Trainer(cfg, feature_splits(args.rows, args.val_rows, width, args.classes))
    epochs = []
    for epoch in range(args.epochs):
        metrics = trainer.train_epoch()
        started = time.perf_counter()
        trainer.eval_metrics(trainer.evaluate())
        metrics["eval_time_s"] = time.perf_counter() - started
        epochs.append(metrics)
        print(f"epoch {epoch + 1}: train {metrics['epoch_time_s']:.3f} s (head {metrics['head_time_s']:.3f} s), "
              f"validation {metrics['eval_time_s']:.3f} s", flush=True)
    timed = epochs[1:]
    gflop = step_gflop(cfg.optim.batch_size, width, cfg.frozen.neck_width, args.classes) * trainer.steps_per_epoch
    train_s = float(np.median([m["epoch_time_s"] for m in timed]))
    print(json.dumps({
        "head": args.head, "head_knobs": cfg.model.head_knobs,
        "rows": args.rows, "val_rows": args.val_rows, "width": width,
        "neck_width": cfg.frozen.neck_width, "classes": args.classes, "batch_size": cfg.optim.batch_size,
        "eval_batch_size": args.eval_batch_size, "threads": torch.get_num_threads(), "epochs_timed": len(timed),
        "median_train_s": train_s, "median_head_s": float(np.median([m["head_time_s"] for m in timed])),
        "median_eval_s": float(np.median([m["eval_time_s"] for m in timed])),
        "epoch_gflop_dense": gflop, "dense_gflop_per_s": gflop / train_s,
        "device": describe_device(trainer.device)["text"],
    }))


if __name__ == "__main__":
    cli.run(main)
