"""Training-epoch speed of the real training loop on synthetic CIFAR-shaped data (timing needs no real images).

    python -m study.bench.epoch --backbone resnet12 --epochs 5            # on the GPU when visible
    python -m study.bench.epoch --backbone tinyvgg --images 2000 --device cpu

Prints each epoch's time, head time and images/s, then the median over the epochs after the first (warm-up).
"""
import json

import numpy as np

from study import cli
from study.class_info import ClassInfo
from study.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig, validate
from study.splits import Splits


def synthetic_splits(images: int, classes: int = 100, seed: int = 0, eval_images: int = 256) -> Splits:
    rng = np.random.default_rng(seed)

    def make(n):
        return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)

    def labels(n):
        return rng.integers(0, classes, size=n)

    coarse = tuple(k % 20 for k in range(classes))
    info = ClassInfo(num_classes=classes, coarse_of_fine=coarse, class_embeddings=rng.normal(size=(classes, 8)))
    # Normalised with the statistics of uniform pixels on 0..255 (mean 1/2, SD 1/sqrt(12) on a 0..1 scale).
    uniform = dict(channel_mean=(0.5,) * 3, channel_std=(12 ** -0.5,) * 3)
    return Splits(make(images), labels(images), make(eval_images), labels(eval_images), "val", info, **uniform)


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.bench.epoch", description=__doc__)
    p.add_argument("--backbone", default="resnet12")
    p.add_argument("--backbone-knob", action="append", metavar="NAME=VALUE", help="e.g. --backbone-knob width=16")
    p.add_argument("--head", default="softmax")
    p.add_argument("--images", type=cli.whole(2), default=50000, help="training images per epoch")
    p.add_argument("--batch-size", type=cli.whole(2), default=512)
    p.add_argument("--epochs", type=cli.whole(1), default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--threads", type=cli.whole(1), help="torch intra-op threads (default: torch's, one per core)")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone (inductor; first epoch compiles)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    import torch

    from study.trainer import Trainer

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    cfg = validate(TrainConfig(
        data=DataConfig(augment=not args.no_augment),
        model=ModelConfig(backbone=args.backbone, head=args.head,
                          backbone_knobs=cli.parse_knobs(args.backbone_knob, "--backbone-knob")),
        optim=OptimConfig(batch_size=args.batch_size, epochs=args.epochs),
        run=RunConfig(device=args.device),
    ))
    trainer = Trainer(cfg, synthetic_splits(args.images))
    if args.compile:  # same parameters, so the optimiser built by Trainer still holds them
        trainer.model["backbone"] = torch.compile(trainer.model["backbone"])
    epochs = []
    for epoch in range(args.epochs):
        metrics = trainer.train_epoch()
        epochs.append(metrics)
        print(f"epoch {epoch + 1}: {metrics['epoch_time_s']:.3f} s  head {metrics['head_time_s']:.4f} s  "
              f"{metrics['images_per_s']:,.0f} img/s", flush=True)
    timed = epochs[1:] or epochs
    summary = {
        "device": str(trainer.device), "backbone": args.backbone, "head": args.head, "images": args.images,
        "batch_size": args.batch_size, "augment": not args.no_augment, "epochs_timed": len(timed),
        "threads": torch.get_num_threads(), "compile": args.compile,
        "median_epoch_time_s": float(np.median([m["epoch_time_s"] for m in timed])),
        "median_head_time_s": float(np.median([m["head_time_s"] for m in timed])),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(main)
