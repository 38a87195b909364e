"""Peak memory of a frozen-backbone trial and of a final model at many classes, and the size of what a final model
saves.

    python -m study.bench.memory                        (K = 10,000, d = 64: 500,000 training rows)
    python -m study.bench.memory --classes 100 --head sparsemax
    python -m study.bench.memory --features k1000.npz --head adaptive --roles trial

On a synthetic features file's arrays (`python -m study.synthetic`'s defaults: 50 training and 10 test examples
per class; or --features FILE's, with its class counts and hierarchy), each role runs in a process of its own, so
that its peak resident memory (the kernel's maxrss) is its own: `trial`, a tuning trial (the tuning split's rows,
10 % held out and validated on after every epoch); `final`, a final model (the same training rows; evaluated once
on the test rows, its compact predictions saved as the analysis saves them, and once on the held-out rows). Both
train --epochs epochs of the `frozen` preset's neck and batch, on one thread (as a trial has). Printed: one JSON
line per role with its peak RSS in MB, its seconds and its median epoch time (training only, without the
validation), the input arrays' size, and for `final` the saved file's size in bytes, with the CPU model. Nothing
here holds an [N, K] array of a whole split: the peak is the process (Python, torch) plus the features plus one
evaluation batch's outputs.
"""
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from study import cli
from study.errors import ConfigError, StudyError

ROLES = ("trial", "final")


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.bench.memory", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head", default="softmax")
    p.add_argument("--classes", type=cli.whole(2), help="K of the generated data (default 10,000)")
    p.add_argument("--dim", type=cli.whole(1), help="feature width d of the generated data (default 64)")
    p.add_argument("--features", help="a features .npz (python -m study.synthetic's format) to use instead of "
                                      "generated data; its own K and d")
    p.add_argument("--roles", default=",".join(ROLES), help=f"comma-separated, of: {', '.join(ROLES)} (default: both)")
    p.add_argument("--epochs", type=cli.whole(1), default=1)
    p.add_argument("--role", choices=ROLES, help=cli.argparse.SUPPRESS)  # the child process's
    return p


def run_role(args) -> dict:
    """One role in this process (the child): train, evaluate and, for a final model, save; on one torch thread,
    as a trial has (put back after)."""
    from study.timing import torch_threads

    with torch_threads(1):
        return train_and_measure(args)


def train_and_measure(args) -> dict:
    import numpy as np

    from analysis.retrain import Job, save
    from study.class_info import ClassInfo
    from study.config import validate
    from study.presets import PRESETS
    from study.sources.features import load_features
    from study.splits import Splits
    from study.synthetic import generate
    from study.timing import describe_device
    from study.trainer import Trainer, fit

    started = time.time()
    if args.features:
        data = load_features(Path(args.features))
        arrays = {"train_features": data.train_inputs, "train_labels": data.train_labels,
                  "test_features": data.test_inputs, "test_labels": data.test_labels}
        classes = len(data.class_names)
        info = ClassInfo(num_classes=classes, parents=data.parents,
                         class_counts=tuple(np.bincount(data.train_labels, minlength=classes).tolist()))
    else:
        arrays = generate(args.classes, dim=args.dim, seed=0)
        classes, info = args.classes, ClassInfo.uniform(args.classes)
    train_x, train_y = arrays["train_features"], arrays["train_labels"]
    held = np.arange(len(train_y)) % 10 == 0  # the tuning split: every 10th row held out to validate on
    if args.role == "trial":
        splits = Splits(train_x[~held], train_y[~held], train_x[held], train_y[held], "val", info)
    else:  # a final model trains on the same rows, is evaluated on test and once on the held-out rows
        splits = Splits(train_x[~held], train_y[~held], arrays["test_features"], arrays["test_labels"], "test", info,
                        val_images=train_x[held], val_labels=train_y[held])
    cfg = validate(PRESETS["frozen"].train.replace(**{"model.head": args.head, "optim.epochs": args.epochs,
                                                      "run.device": "cpu", "data.final": args.role == "final"}))
    trainer = Trainer(cfg, splits)
    epoch_times = [metrics["epoch_time_s"] for metrics in fit(cfg, trainer=trainer)]  # a trial validates each epoch
    found = {"role": args.role, "head": args.head, "classes": classes, "dim": int(train_x.shape[1]),
             "epochs": args.epochs, "epoch_time_s": round(statistics.median(epoch_times), 3),
             "train_rows": len(splits.train_labels), "eval_rows": len(splits.eval_labels),
             "features_mb": round((splits.train_images.nbytes + splits.eval_images.nbytes) / 1e6, 1)}
    if args.role == "final":
        evaluation = trainer.evaluate()
        trainer.validation_metrics()  # its validation accuracy, as a final model's record holds
        with tempfile.TemporaryDirectory() as folder:
            save(Path(folder), Job(args.head, 1, cfg), evaluation, {"history": []}, timed_alone=True)
            found["saved_bytes"] = sum(p.stat().st_size for p in Path(folder).iterdir())
        found["full_log_probs_mb"] = round(len(evaluation) * classes * 4 / 1e6, 1)  # what it does not hold
    found["seconds"] = round(time.time() - started, 1)
    found["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kB
    found["device"] = describe_device(trainer.device)["text"]
    return found


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.role:
        print(json.dumps(run_role(args)), flush=True)
        return
    from study.config import validate
    from study.presets import PRESETS

    validate(PRESETS["frozen"].train.replace(**{"model.head": args.head}))  # the head's name, before any child
    roles = [role.strip() for role in args.roles.split(",")]
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise ConfigError(f"--roles: unknown role '{unknown[0] if unknown else ''}'; choose from: {', '.join(ROLES)}")
    if args.features:
        if args.classes is not None or args.dim is not None:
            raise ConfigError("--classes and --dim describe generated data; --features FILE has its own K and d: "
                              "give one or the other")
        from study.sources.features import load_features

        load_features(Path(args.features))  # a file that does not read is one line here, not a child's failure
        data = ["--features", args.features]
    else:
        data = ["--classes", str(args.classes or 10_000), "--dim", str(args.dim or 64)]
    for role in roles:
        # noqa below: this interpreter and this module, with the arguments argparse has already checked
        child = subprocess.run([sys.executable, "-m", "study.bench.memory", "--role", role, "--head", args.head,  # noqa: S603
                                *data, "--epochs", str(args.epochs)], capture_output=True, text=True)
        if child.returncode != 0:
            raise StudyError(f"the {role} process failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}")
        print(child.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    cli.run(main)
