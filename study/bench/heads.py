"""Head-only cost against the number of classes K: the complexity study.

    python -m study.bench.heads                      # CUDA when visible: K = 100 ... 1,000,000
    python -m study.bench.heads --device cpu         # CPU: K = 100 ... 10,000 by default

For each head and K it times, on random features (d = 640, batch 512 by default), one training step of the head
(forward + backward of its loss) and full inference (all K log-probabilities), as the median of --repeats runs after
--warmup runs, and records peak GPU memory. Writes a CSV and a log-log plot with the fitted slope of each line, and
prints the table, the slopes and, per head, the smallest K where its training step beats softmax's.
"""
import argparse
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from study import cli
from study.errors import ConfigError
from study.heads import HEADS, create_head, list_heads
from study.timing import synchronize

CUDA_CLASSES = "100,1000,10000,100000,1000000"
CPU_CLASSES = "100,1000,10000"


def time_call(fn, device, repeats: int, warmup: int) -> float:
    """Median milliseconds of fn() over `repeats` synchronised runs, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(1000 * (time.perf_counter() - started))
    return float(np.median(times))


def measure(head_name, num_classes, dim, batch, device, repeats, warmup) -> list:
    torch.manual_seed(0)
    head = create_head(head_name, dim, num_classes).to(device)
    h = torch.randn(batch, dim, device=device, requires_grad=True)
    y = torch.randint(0, num_classes, (batch,), device=device)

    def train_step():
        head.zero_grad(set_to_none=True)
        head.loss(h, y).backward()

    @torch.no_grad()
    def inference():
        head.log_probs(h)

    rows = []
    for phase, fn in (("train", train_step), ("inference", inference)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ms = time_call(fn, device, repeats, warmup)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        rows.append({"head": head_name, "K": num_classes, "phase": phase, "median_ms": ms, "peak_mem_mib": peak,
                     "head_params": sum(p.numel() for p in head.parameters()), "train_cost": head.train_cost,
                     "infer_cost": head.infer_cost})
    return rows


def run(heads, classes, dim, batch, device, repeats, warmup, log=print) -> pd.DataFrame:
    rows = []
    for k in classes:
        for name in heads:
            try:
                new = measure(name, k, dim, batch, device, repeats, warmup)
            except (torch.OutOfMemoryError, MemoryError) as error:  # record it and go on: keep what was measured
                new = [{"head": name, "K": k, "phase": p, "median_ms": math.nan, "peak_mem_mib": math.nan,
                        "note": f"out of memory: {str(error).splitlines()[0][:80]}"} for p in ("train", "inference")]
            finally:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows += new
            log(f"K={k:>9,} {name:>14}: train {new[0]['median_ms']:9.3f} ms   inference {new[1]['median_ms']:9.3f} ms")
    frame = pd.DataFrame(rows)
    frame.insert(0, "device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    frame["d"], frame["batch"], frame["repeats"], frame["torch"] = dim, batch, repeats, torch.__version__
    return frame


def slopes(frame: pd.DataFrame) -> pd.DataFrame:
    """Least-squares slope of log(time) on log(K) per head and phase: 1 = linear in K, ~0 = independent of K."""
    rows = []
    for (head, phase), group in frame.dropna(subset=["median_ms"]).groupby(["head", "phase"]):
        if group["K"].nunique() >= 2:
            slope = np.polyfit(np.log(group["K"]), np.log(group["median_ms"]), 1)[0]
            rows.append({"head": head, "phase": phase, "slope": slope})
    return pd.DataFrame(rows)


def crossovers(frame: pd.DataFrame, baseline: str = "softmax") -> dict:
    """{head: smallest K where its training step is faster than the baseline's, or None}."""
    train = frame[frame["phase"] == "train"].pivot_table(index="K", columns="head", values="median_ms")
    found = {}
    for head in train.columns.drop(baseline, errors="ignore"):
        faster = train.index[train[head] < train[baseline]] if baseline in train else []
        found[head] = int(faster.min()) if len(faster) else None
    return found


def plot(frame: pd.DataFrame, fitted: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, phase in zip(axes, ("train", "inference")):
        for head, group in frame[frame["phase"] == phase].groupby("head"):
            slope = fitted[(fitted["head"] == head) & (fitted["phase"] == phase)]["slope"]
            label = f"{head} (slope {slope.iloc[0]:.2f})" if len(slope) else head
            ax.loglog(group["K"], group["median_ms"], marker="o", label=label)
        ax.set_xlabel("number of classes K")
        ax.set_ylabel("median time (ms)")
        ax.set_title("training step (loss forward + backward)" if phase == "train" else "full inference (log_probs)")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Head cost vs K on {frame['device'].iloc[0]} "
                 f"(d={frame['d'].iloc[0]}, batch={frame['batch'].iloc[0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def int_list(text: str):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers")
    if min(values) < 2:
        raise argparse.ArgumentTypeError(f"every K must be >= 2, got {min(values)}")
    return values


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.bench.heads", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--heads", default="all", help="'all' or a comma-separated list")
    p.add_argument("--classes", type=int_list, help=f"K values (default CUDA {CUDA_CLASSES}, CPU {CPU_CLASSES})")
    p.add_argument("--dim", type=cli.whole(1), default=640, help="feature width d")
    p.add_argument("--batch", type=cli.whole(1), default=512)
    p.add_argument("--repeats", type=cli.whole(1), default=20)
    p.add_argument("--warmup", type=cli.whole(0), default=3)
    p.add_argument("--out", default="bench_heads.csv", help="CSV path; the plot goes beside it as .png")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():  # checked before minutes of timing, not after
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist; choose a path in an existing folder")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible; choose from: cpu, auto")
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    heads = list_heads() if args.heads == "all" else args.heads.split(",")
    for name in heads:
        HEADS.get(name)  # unknown names fail here, in one line, before any timing
    classes = args.classes or int_list(CUDA_CLASSES if device.type == "cuda" else CPU_CLASSES)
    frame = run(heads, classes, args.dim, args.batch, device, args.repeats, args.warmup)
    fitted = slopes(frame)
    frame.to_csv(out, index=False)
    plot(frame, fitted, out.with_suffix(".png"))
    table = frame.pivot_table(index="head", columns=["phase", "K"], values="median_ms")
    print(f"\nmedian ms on {frame['device'].iloc[0]}, d={args.dim}, batch={args.batch}, {args.repeats} repeats")
    print(table.round(3).to_markdown())
    print("\nfitted log-log slopes (time ~ K^slope):")
    print(fitted.pivot_table(index="head", columns="phase", values="slope").round(2).to_markdown())
    print("\nsmallest K where the training step beats softmax:")
    for head, k in crossovers(frame).items():
        print(f"  {head:>14}: {k if k is not None else 'not within the K measured'}")
    print(f"\nwrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    cli.run(main)
