"""Where each head's final models go wrong, at any number of classes, from their compact predictions.

Per head, summed over its non-diverged seeds, into the analysis's confusion/ folder:
- always, `<head>_per_class.csv`: each class's precision, recall, F1 and support (pooled counts over the seeds);
- up to MATRIX_CLASSES classes, the K x K matrix as `<head>.csv` and a picture, `<head>.png` (row-normalised);
- above it, where a picture of K x K cells reads as noise and the CSV would grow with K squared (800 MB at
  K = 10,000), `<head>_top_confusions.csv`: the TOP_CONFUSIONS most frequent (true, predicted) pairs of wrong
  predictions, with their count and share of the true class's examples; the report shows the first few;
- wherever the data has a class hierarchy whose top level has at most MATRIX_CLASSES groups, the superclass matrix
  (`<head>_superclass.csv` and `.png`), counted from the true and predicted classes' groups.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from study.metrics import confusion_matrix, confusion_pairs, pair_counts, per_class_precision_recall_f1
from study.predictions import Compact

MATRIX_CLASSES = plots.CONFUSION_PLOT_CLASSES  # the most classes (or superclasses) a K x K matrix is written for
TOP_CONFUSIONS = 1000  # rows of <head>_top_confusions.csv (a few tens of kB)
REPORT_CONFUSIONS = 5  # rows per head in the report's table


def per_class_frame(c: Compact, names) -> pd.DataFrame:
    precision, recall, f1, support = per_class_precision_recall_f1(c)
    return pd.DataFrame({"class": names, "precision": precision, "recall": recall, "f1": f1, "support": support})


def top_confusions(c: Compact, names, limit: int = TOP_CONFUSIONS) -> pd.DataFrame:
    """The `limit` most frequent wrong (true, predicted) pairs, most frequent first (ties: by true, then predicted
    class), with each pair's share of its true class's examples."""
    true, predicted, counts = confusion_pairs(c)
    wrong = true != predicted
    true, predicted, counts = true[wrong], predicted[wrong], counts[wrong]
    order = np.lexsort((predicted, true, -counts))[:limit]
    support = np.bincount(c.labels, minlength=c.num_classes)
    names = np.asarray(names, dtype=object)
    return pd.DataFrame({"true class": names[true[order]], "predicted class": names[predicted[order]],
                         "count": counts[order], "share of true class": counts[order] / support[true[order]]})


def superclass_matrix(c: Compact, coarse_of_fine) -> np.ndarray:
    """[G, G] counts of (true superclass, predicted superclass)."""
    coarse = np.asarray(coarse_of_fine)
    return pair_counts(coarse[c.labels], coarse[c.predicted], int(coarse.max()) + 1)


def write(folder: Path, predictions: dict, per_seed: pd.DataFrame) -> tuple:
    """Every head's files (module docstring). Returns ({head: PNG of its K x K matrix}, {head: its most frequent
    confusions, for the report}: the latter only above MATRIX_CLASSES classes)."""
    folder.mkdir(exist_ok=True)
    pngs, tables = {}, {}
    for head, group in per_seed.groupby("head", sort=False):
        seeds = list(group.loc[~group["diverged"], "seed"])
        if not seeds:
            continue
        c = Compact.concat([predictions[(head, s)].compact for s in seeds])  # the seeds' counts add up
        record = predictions[(head, seeds[0])].record
        names = record.get("fine_names") or [str(k) for k in range(c.num_classes)]
        per_class_frame(c, names).to_csv(folder / f"{head}_per_class.csv", index=False)
        if c.num_classes <= MATRIX_CLASSES:
            matrix = confusion_matrix(c)
            pd.DataFrame(matrix, index=names, columns=names).to_csv(folder / f"{head}.csv")
            pngs[head] = folder / f"{head}.png"
            plots.confusion_plot(matrix, names, f"{head}: test confusion (rows: true class, {len(seeds)} seeds)",
                                 pngs[head])
        else:
            table = top_confusions(c, names)
            table.to_csv(folder / f"{head}_top_confusions.csv", index=False)
            if not table.empty:  # a head with no wrong prediction has nothing to list
                tables[head] = table.head(REPORT_CONFUSIONS)
        coarse = record["coarse_of_fine"]
        if coarse and max(coarse) + 1 <= MATRIX_CLASSES:
            coarse_matrix = superclass_matrix(c, coarse)
            coarse_names = record.get("coarse_names") or [str(g) for g in range(len(coarse_matrix))]
            pd.DataFrame(coarse_matrix, index=coarse_names, columns=coarse_names).to_csv(
                folder / f"{head}_superclass.csv")
            plots.confusion_plot(coarse_matrix, coarse_names, f"{head}: superclass confusion",
                                 folder / f"{head}_superclass.png")
    return pngs, tables


def report_lines(tables: dict) -> list:
    """The report's section on the most frequent confusions (none when every matrix was written whole)."""
    if not tables:
        return []
    lines = ["## Most frequent confusions", "",
             f"Above {MATRIX_CLASSES} classes no K x K matrix is written; per head, its final models' most frequent "
             f"wrong predictions (all seeds together; the first {TOP_CONFUSIONS} in confusion/<head>_top_confusions.csv"
             ", every class's precision, recall and F1 in confusion/<head>_per_class.csv):", ""]
    for head, table in tables.items():
        shown = table.assign(**{"share of true class": [f"{100 * v:.1f} %" for v in table["share of true class"]]})
        lines += [f"**{head}**", "", shown.to_markdown(index=False), ""]
    return lines
