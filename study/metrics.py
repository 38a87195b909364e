"""Classification metrics from a model's compact predictions (study/predictions.py: Compact): per example, the true
class, the class ranked first, the top-5 classes and a few log-probabilities; per class, counts. Nothing here needs
the [N, K] matrix, so every metric works at any K.

Ranking metrics (accuracy, top-k, precision/recall/F1, confusion) follow the model's own class ranking: the compact
predictions are ranked by the head's scores where its log-probabilities tie (sparse heads give many classes
probability exactly 0, and only their scores order those), else by its log-probabilities (Compact.of).

One NLL rule for every head: probabilities are floored at PROB_FLOOR before the log (the sparse heads clamp their
log-probabilities at the same floor), so a target given probability 0 costs -log(1e-12) = 27.63 nats.
`floored_target_share` says how many targets sit at that floor (for sparse heads: outside the predicted support).

A model whose log-probabilities are not all finite (a diverged model) gets NaN for every metric, never a score.
"""
from typing import Optional, Sequence

import numpy as np

from study.predictions import TOP_K, Compact

PROB_FLOOR = 1e-12  # the least probability any head reports and the NLL counts: keeps log p finite
LOG_PROB_FLOOR = float(np.log(PROB_FLOOR))  # -27.63 nats
ECE_BINS = 15


def accuracy(c: Compact) -> float:
    return float(c.correct.mean())


def top_k_accuracy(c: Compact, k: int = TOP_K) -> float:
    return float((c.top_classes[:, :k] == c.labels[:, None]).any(1).mean())


def macro_precision_recall_f1(c: Compact):
    """Unweighted means over all K classes; a class never predicted counts as precision 0."""
    precision, recall, f1, _ = per_class_precision_recall_f1(c)
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def per_class_precision_recall_f1(c: Compact):
    """([K] precision, [K] recall, [K] F1, [K] support) from per-class counts: a class never predicted has
    precision 0, one never present recall 0, and F1 is 0 where both are (scikit-learn's zero_division=0)."""
    k = c.num_classes
    hits = np.bincount(c.labels[c.correct], minlength=k).astype(float)
    predicted = np.bincount(c.predicted, minlength=k).astype(float)
    support = np.bincount(c.labels, minlength=k)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    return precision, recall, f1, support


def confusion_matrix(c: Compact) -> np.ndarray:
    """[K, K] counts: row = true class, column = predicted class. Dense: for K up to a few hundred (the analysis
    draws it up to analysis/plots.py: CONFUSION_PLOT_CLASSES); confusion_pairs has any K."""
    return pair_counts(c.labels, c.predicted, c.num_classes)


def pair_counts(true: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """[k, k] counts of (true, predicted) over ids 0 .. k-1: row = true, column = predicted."""
    return np.bincount(true * k + predicted, minlength=k * k).reshape(k, k)


def confusion_pairs(c: Compact) -> tuple:
    """The non-zero cells of the confusion matrix at any K: (true [M], predicted [M], count [M]), sorted by true
    class, then predicted class."""
    cells, counts = np.unique(c.labels * c.num_classes + c.predicted, return_counts=True)
    return cells // c.num_classes, cells % c.num_classes, counts


def nll(c: Compact) -> float:
    return float(-np.maximum(c.target_log_prob, LOG_PROB_FLOOR).mean())


def floored_target_share(c: Compact) -> float:
    """Share of examples whose target's probability is at or below PROB_FLOOR (their NLL term is the floor's)."""
    return float((c.target_log_prob <= LOG_PROB_FLOOR + 1e-4).mean())  # float32 log(1e-12) is within 1e-6 of it


def expected_calibration_error(c: Compact, bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share of examples per bin.
    Confidence is the probability of the predicted class; a confidence of exactly 1 falls in the last bin."""
    confidence = np.exp(c.predicted_log_prob)
    if not np.isfinite(confidence).all():
        return float("nan")
    correct = c.correct
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def superclass_error_share(c: Compact, coarse_of_fine: Sequence[int]) -> float:
    """Of the wrong predictions, the share whose predicted class lies in the true class's superclass (NaN: none)."""
    coarse = np.asarray(coarse_of_fine)
    wrong = ~c.correct
    if not wrong.any():
        return float("nan")
    return float((coarse[c.predicted[wrong]] == coarse[c.labels[wrong]]).mean())


METRICS = ["accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "nll", "floored_target_share",
           "ece", "superclass_error_share"]


def compact_metrics(c: Compact, coarse_of_fine: Optional[Sequence[int]] = None) -> dict:
    """Every metric of METRICS (superclass_error_share only with coarse_of_fine) from a model's compact
    predictions; all NaN for a model whose log-probabilities or scores were not all finite."""
    names = METRICS if coarse_of_fine is not None else METRICS[:-1]
    if not c.finite:
        return dict.fromkeys(names, float("nan"))
    precision, recall, f1 = macro_precision_recall_f1(c)
    metrics = {
        "accuracy": accuracy(c),
        "top5_accuracy": top_k_accuracy(c, 5),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "nll": nll(c),
        "floored_target_share": floored_target_share(c),
        "ece": expected_calibration_error(c),
    }
    if coarse_of_fine is not None:
        metrics["superclass_error_share"] = superclass_error_share(c, coarse_of_fine)
    return metrics


def all_metrics(log_probs: np.ndarray, labels: np.ndarray, coarse_of_fine: Optional[Sequence[int]] = None,
                scores: Optional[np.ndarray] = None) -> dict:
    """compact_metrics of full outputs (log_probs [N, K], scores [N, K] or None), through their compact form."""
    return compact_metrics(Compact.of(log_probs, labels, scores), coarse_of_fine)
