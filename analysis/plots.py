"""Figures of the final models and of the search: Pareto front, learning curves, confusion matrices."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.results import pareto_eligible  # noqa: E402



def pareto_plot(summary: pd.DataFrame, path: Path) -> None:
    """Heads clear of chance with measured costs: median epoch time with its 95 % interval over the timing rounds,
    mean test accuracy with its 95 % CI over seeds; the front (summary["pareto"]) respects both."""
    summary = summary[pareto_eligible(summary)]
    fig, ax = plt.subplots(figsize=(7, 5))
    if summary.empty:
        ax.text(0.5, 0.5, "no head clear of chance with measured costs", ha="center", va="center")
    # Alternate the labels above and below their points, in accuracy order: heads of equal accuracy sit close.
    below = dict(zip(summary.sort_values("accuracy")["head"], [i % 2 == 1 for i in range(len(summary))]))
    for _, row in summary.iterrows():
        x = row["median_epoch_time_s"]
        low = np.nan_to_num(x - row["median_epoch_time_s_ci_low"])
        high = np.nan_to_num(row["median_epoch_time_s_ci_high"] - x)
        ax.errorbar(x, 100 * row["accuracy"], xerr=[[low], [high]], yerr=np.nan_to_num(100 * row["accuracy_ci95"]),
                    fmt="o", capsize=3)
        ax.annotate(row["head"], (x, 100 * row["accuracy"]), textcoords="offset points", fontsize=9,
                    xytext=(6, -12 if below[row["head"]] else 5))
    front = summary[summary.get("pareto", pd.Series(False, index=summary.index))].sort_values("median_epoch_time_s")
    if not front.empty:
        ax.plot(front["median_epoch_time_s"], 100 * front["accuracy"], "--", color="gray",
                label="Pareto front (differences the tests resolve)")
        ax.legend()
    if not summary.empty and summary["median_epoch_time_s"].max() > 4 * summary["median_epoch_time_s"].min():
        ax.set_xscale("log")  # one slow head (entmax's bisection) would squeeze every other into a corner
    ax.set_xlabel("epoch time (s): median over timing rounds, 95 % interval")
    ax.set_ylabel("test accuracy (%): mean over seeds, 95 % CI")
    ax.set_title("Accuracy vs epoch time")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curves_plot(curves: pd.DataFrame, path: Path) -> None:
    """val_acc per epoch of each head's best tuning trial."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for head, group in curves.groupby("head", sort=False):
        ax.plot(group["epoch"], 100 * group["val_acc"], marker=".", label=head)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Best trial of each head during tuning")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def accuracy_vs_time_plot(curves: pd.DataFrame, targets: dict, path: Path) -> None:
    """Each head's convergence-check runs at twice the epochs: mean validation accuracy over seeds (band: min to max)
    against cumulative training seconds at the head's median epoch time measured alone; `targets` {label:
    accuracy} are drawn as horizontal lines (90 % and 99 % of the baseline's converged accuracy)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    if curves.empty:
        ax.text(0.5, 0.5, "no timed convergence runs", ha="center", va="center")
    for head, group in curves.groupby("head", sort=False):
        line, = ax.plot(group["seconds"], 100 * group["val_acc"], marker=".", label=head)
        ax.fill_between(group["seconds"], 100 * group["val_acc_min"], 100 * group["val_acc_max"], alpha=0.15,
                        color=line.get_color())
    for label, accuracy in targets.items():
        if np.isfinite(accuracy):
            ax.axhline(100 * accuracy, color="gray", linestyle=":", linewidth=1)
            ax.annotate(label, (0.01, 100 * accuracy), xycoords=ax.get_yaxis_transform(), textcoords="offset points",
                        xytext=(0, 2), fontsize=8, color="gray")  # x in axes units: at the left edge on any scale
    if not curves.empty and curves.groupby("head")["seconds"].max().max() > 4 * curves.groupby("head")[
            "seconds"].max().min():
        ax.set_xscale("log")  # one slow head would squeeze every other into a corner
    ax.set_xlabel("training seconds (epochs x median epoch time measured alone)")
    ax.set_ylabel("validation accuracy (%): mean over seeds, band min-max")
    ax.set_title("Accuracy against training time (2x the study's epochs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


CONFUSION_PLOT_CLASSES = 200  # the most classes a confusion-matrix picture is drawn for (36 inches at 0.18 each)


def confusion_plot(matrix: np.ndarray, names, title: str, path: Path) -> None:
    """Row-normalised confusion matrix; big enough that 100 class names stay legible."""
    size = max(6, 0.18 * len(names))
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=max(4, 9 - len(names) // 25))
    ax.set_yticks(range(len(names)), names, fontsize=max(4, 9 - len(names) // 25))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.03)
    # Margins from the longest name rather than tight_layout, which measures every tick label's extent: profiled
    # over an analysis of every head (18 plots, 23 s under cProfile), that measuring was 6.8 s of it.
    fontsize = max(4, 9 - len(names) // 25)
    margin = min(0.4, (0.6 + 0.6 * fontsize / 72 * max(map(len, names))) / size)  # label + axis title, inches
    fig.subplots_adjust(left=margin, bottom=margin, right=0.97, top=0.95)
    fig.savefig(path, dpi=110)
    plt.close(fig)
