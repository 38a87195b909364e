"""Evaluation speed against the evaluation batch size, on synthetic CIFAR-shaped images.

    python -m study.bench.eval --backbone tinyvgg --backbone-knob width=16 --device cpu
    python -m study.bench.eval --backbone resnet12 --batch-sizes 256,1024,4096     # on the GPU when visible

Times `Trainer.evaluate` (forward pass and every class's log-probability for each image) over --images images, for
each batch size; prints the median of --repeats runs after one warm-up run, then one JSON line. It is what chose
the per-device defaults in study/trainer.py (EVAL_BATCH_SIZE).
"""
import json
import time

import numpy as np

from study import cli
from study.bench.epoch import synthetic_splits
from study.config import ModelConfig, OptimConfig, RunConfig, TrainConfig, validate
from study.errors import ConfigError


def parse_sizes(text: str):
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes '{text}' must be positive integers separated by commas, e.g. 64,256")
    return sizes


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.bench.eval", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="tinyvgg")
    p.add_argument("--backbone-knob", action="append", metavar="NAME=VALUE", help="e.g. --backbone-knob width=16")
    p.add_argument("--head", default="softmax")
    p.add_argument("--images", type=cli.whole(1), default=10000,
                   help="images evaluated per run (CIFAR-100's test split: 10k)")
    p.add_argument("--batch-sizes", default="1024,256,128,64,32")
    p.add_argument("--repeats", type=cli.whole(1), default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=cli.whole(1), help="torch CPU threads (default: torch's own choice)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    sizes = parse_sizes(args.batch_sizes)
    import torch

    from study.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = validate(TrainConfig(
        model=ModelConfig(backbone=args.backbone, head=args.head,
                          backbone_knobs=cli.parse_knobs(args.backbone_knob, "--backbone-knob")),
        optim=OptimConfig(batch_size=64, epochs=1), run=RunConfig(device=args.device)))
    rows = []
    for size in sizes:
        trainer = Trainer(cfg.replace(**{"run.eval_batch_size": size}), synthetic_splits(64, eval_images=args.images))
        runs = []
        for repeat in range(args.repeats + 1):  # the first run warms up (allocator, cudnn autotuning)
            started = time.perf_counter()
            trainer.evaluate()
            if repeat:
                runs.append(time.perf_counter() - started)
        median = float(np.median(runs))
        rows.append({"batch_size": size, "median_s": median, "images_per_s": args.images / median})
        print(f"batch {size:>5}: {median:.3f} s  ({args.images / median:,.0f} images/s)", flush=True)
    print(json.dumps({"device": str(trainer.device), "threads": torch.get_num_threads(), "backbone": args.backbone,
                      "backbone_knobs": cfg.model.backbone_knobs, "images": args.images, "repeats": args.repeats,
                      "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    cli.run(main)
