"""The K-scaling study: every head tuned, retrained and costed on synthetic features at one K of the sweep.

    python -m study.bench.kscaling --classes 100       # then 1000, then 10000: one K per command
    python -m analysis.kscaling runs/kscaling-k100 runs/kscaling-k1000 runs/kscaling-k10000

Each K gets a features file from `python -m study.synthetic` (d = 64, a random hierarchy of branching 10, Zipf
frequencies of exponent 1, data seed 0) and the study of `python study/tune.py --data features:FILE --preset frozen`
with the budget of SWEEP below: the same for every head at that K, stated in the run's kscaling.json and in
BENCHMARKS.md. Before the study, each head trains one epoch on the file's tuning rows in a process of its own
(`python -m study.bench.memory --roles trial`): its peak memory, and its epoch time, by which a head too slow for
this K's budget is left out, named on the console and in kscaling.json with its measured time, never silently.

Running the command again continues where it stopped: the file and the probes are kept, and the study is resumed.
"""
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from study import cli
from study.errors import StudyError
from study.files import write_text_atomic

DIM, BRANCHING, ZIPF, DATA_SEED = 64, 10, 1.0, 0
RECORD = "kscaling.json"  # in the run directory, once the study has ended


@dataclass(frozen=True)
class SweepPoint:
    """One K's budget. The examples per class are the same at K = 100 and 1,000; at 10,000 they are fewer, so that
    a trial epoch of every kept head fits (the rows are then the same as at 1,000)."""
    classes: int
    train_per_class: int
    test_per_class: int
    searches: int  # each retrained with one final seed: the final models per head, and the verdicts' unit
    trials_per_search: int
    epochs: int
    max_epoch_s: float  # a head whose probe epoch takes longer is left out at this K

    @property
    def name(self) -> str:
        return f"kscaling-k{self.classes}"


SWEEP = {
    # Five searches (five final models a head) where they fit: a few minutes at K = 100.
    100: SweepPoint(100, train_per_class=20, test_per_class=10, searches=5, trials_per_search=4, epochs=40,
                    max_epoch_s=6.0),
    1_000: SweepPoint(1_000, train_per_class=20, test_per_class=10, searches=3, trials_per_search=2, epochs=20,
                      max_epoch_s=6.0),
    # Two examples a class, 10 epochs: 0.4 to 5.2 s a trial epoch on 2 cores for every head but entmax, whose
    # bisection over 10,000 classes takes about 25 s an epoch on this machine (some 35 minutes alone): left out.
    10_000: SweepPoint(10_000, train_per_class=2, test_per_class=2, searches=3, trials_per_search=2, epochs=10,
                       max_epoch_s=6.0),
}


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.bench.kscaling", description=__doc__,
                           formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=cli.whole(2), required=True,
                   help=f"K, one of the sweep's: {', '.join(str(k) for k in SWEEP)}")
    p.add_argument("--storage", default="runs",
                   help="where the run directory (kscaling-kK) and the data folder (kscaling-data) go (default runs)")
    return p


def data_file(storage: Path, point: SweepPoint) -> Path:
    return storage / "kscaling-data" / f"k{point.classes}.npz"


def write_data(path: Path, point: SweepPoint) -> None:
    from study import synthetic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file where a folder should be, a folder it may not write
        raise StudyError(f"cannot make {path.parent}: {error.strerror}; choose another --storage") from None
    synthetic.main(["--classes", str(point.classes), "--dim", str(DIM), "--train",
                    str(point.train_per_class * point.classes), "--test", str(point.test_per_class * point.classes),
                    "--branching", str(BRANCHING), "--zipf", str(ZIPF), "--seed", str(DATA_SEED), "--out",
                    str(path)])


def probe(path: Path, head: str) -> dict:
    """One epoch of `head` on the file's tuning rows, in a process of its own: its peak RSS and epoch time."""
    # noqa below: this interpreter and this project's module, with a registered head and a file this command wrote
    child = subprocess.run([sys.executable, "-m", "study.bench.memory", "--features", str(path), "--head", head,  # noqa: S603
                            "--roles", "trial"], capture_output=True, text=True)
    if child.returncode != 0:
        raise StudyError(f"the probe of head '{head}' failed: {(child.stderr.strip().splitlines() or ['?'])[-1]}")
    try:
        return json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise StudyError(f"the probe of head '{head}' printed no result; run python -m study.bench.memory "
                         f"--features {path} --head {head} --roles trial to see why") from None


def probes(path: Path, point: SweepPoint, heads) -> dict:
    """{head: probe}, kept beside the data file: a rerun measures only the heads not yet probed."""
    kept_file = path.with_suffix(".probes.json")
    try:
        kept = json.loads(kept_file.read_text()) if kept_file.exists() else {}
    except ValueError:  # written whole (write_text_atomic), so only damaged from outside
        raise StudyError(f"{kept_file} is damaged (not valid JSON); delete it to probe the heads again") from None
    for head in heads:
        if head not in kept:
            kept[head] = probe(path, head)
            print(f"probe {head}: {kept[head]['epoch_time_s']:.2f} s an epoch of {kept[head]['train_rows']} rows, "
                  f"peak {kept[head]['peak_rss_mb']:.0f} MB", flush=True)
            write_text_atomic(kept_file, json.dumps(kept, indent=1))
    return kept


def left_out(point: SweepPoint, measured: dict) -> dict:
    """{head: reason} for the heads whose probe epoch exceeds this K's max_epoch_s."""
    return {head: f"{found['epoch_time_s']:.1f} s a trial epoch (1 epoch of {found['train_rows']} rows measured), "
                  f"above this K's {point.max_epoch_s:g} s"
            for head, found in measured.items() if found["epoch_time_s"] > point.max_epoch_s}


def check_data(path: Path, point: SweepPoint) -> None:
    """A data file left by an earlier start has this K's sizes (the sweep's budget may have changed since)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as arrays:
            rows = (len(arrays["train_labels"]), len(arrays["test_labels"]))
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise StudyError(f"{path} does not read as this sweep's data ({error}); delete it and "
                         f"{path.with_suffix('.probes.json').name} to make them again") from None
    wanted = (point.train_per_class * point.classes, point.test_per_class * point.classes)
    if rows != wanted:
        raise StudyError(f"{path} holds {rows[0]} training and {rows[1]} test rows, not this K's {wanted[0]} and "
                         f"{wanted[1]}; delete it and {path.with_suffix('.probes.json').name} to make them again")


def check_run(run_dir: Path, point: SweepPoint, heads) -> None:
    """A run left by an earlier start was made with this K's budget and heads: resuming it under another budget
    would record a budget it was not run with."""
    spec = json.loads((run_dir / "study.json").read_text())
    made = (spec["searches"], spec["num_samples"], spec["train"]["optim"]["epochs"], list(spec["heads"]))
    wanted = (point.searches, point.searches * point.trials_per_search, point.epochs, list(heads))
    if made != wanted:
        raise StudyError(f"run {run_dir} was made with searches, trials, epochs and heads {made[:3]}, "
                         f"{','.join(made[3])}, not this K's {wanted[:3]}, {','.join(wanted[3])}; delete it (or give "
                         "another --storage) to run this K's budget")


def tune_arguments(point: SweepPoint, path: Path, storage: Path, heads, resume: bool) -> list:
    if resume:  # the run keeps the spec it was made with
        return ["--resume", "--name", point.name, "--storage", str(storage)]
    return ["--data", f"features:{path}", "--preset", "frozen", "--head", ",".join(heads),
            "--searches", str(point.searches), "--num-samples", str(point.searches * point.trials_per_search),
            "--epochs", str(point.epochs), "--storage", str(storage), "--name", point.name]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.classes not in SWEEP:
        raise StudyError(f"--classes {args.classes} is not in the sweep; choose from: "
                         f"{', '.join(str(k) for k in SWEEP)}")
    from study.heads import list_heads
    from study.tune import main as tune_main

    point, storage = SWEEP[args.classes], Path(args.storage).resolve()  # the run records where its data is
    if storage.exists() and not storage.is_dir():
        raise StudyError(f"--storage {storage} is a file, not a folder; choose a folder for the run directories")
    path = data_file(storage, point)
    if path.exists():
        check_data(path, point)
    else:
        write_data(path, point)
    heads = list_heads()
    measured = probes(path, point, heads)
    out = left_out(point, measured)
    for head, reason in out.items():
        print(f"left out at K = {point.classes}: {head}, {reason}", flush=True)
    kept = [head for head in heads if head not in out]
    if "softmax" in out:  # every verdict and ratio is against it
        raise StudyError(f"softmax, the baseline, is itself too slow for K = {point.classes}'s budget "
                         f"({out['softmax']}); nothing could be compared")
    run_dir = storage / point.name
    resume = (run_dir / "study.json").exists()
    if resume:
        check_run(run_dir, point, kept)
    tune_main(tune_arguments(point, path, storage, kept, resume))
    record = {"budget": asdict(point), "data": str(path), "dim": DIM, "branching": BRANCHING, "zipf": ZIPF,
              "data_seed": DATA_SEED, "heads": kept, "left_out": out, "probes": measured}
    write_text_atomic(run_dir / RECORD, json.dumps(record, indent=1))
    print(f"K = {point.classes} done: {run_dir}; the sweep's table: python -m analysis.kscaling RUN_DIR ...",
          flush=True)


if __name__ == "__main__":
    cli.run(main)
