"""Classification metrics from saved predictions: log-probabilities [N, K] and true labels [N].

Ranking metrics (accuracy, top-k, precision/recall/F1, confusion) take the model's own class ranking, `scores`
[N, K], when it differs from its log-probabilities: sparse heads give many classes probability exactly 0, and only
their scores order those. Without `scores`, the log-probabilities rank.

One NLL rule for every head: probabilities are floored at PROB_FLOOR before the log (the sparse heads clamp their
log-probabilities at the same floor), so a target given probability 0 costs -log(1e-12) = 27.63 nats.
`floored_target_share` says how many targets sit at that floor (for sparse heads: outside the predicted support).

A model whose log-probabilities are not all finite (a diverged model) gets NaN for every metric, never a score.
"""
from typing import Optional, Sequence

import numpy as np

PROB_FLOOR = 1e-12  # the least probability any head reports and the NLL counts: keeps log p finite
LOG_PROB_FLOOR = float(np.log(PROB_FLOOR))  # -27.63 nats
ECE_BINS = 15


def ranking(log_probs: np.ndarray, scores: Optional[np.ndarray] = None) -> np.ndarray:
    """What orders the classes: the model's scores when it has its own, else its log-probabilities."""
    return log_probs if scores is None else scores


def accuracy(log_probs: np.ndarray, labels: np.ndarray, scores: Optional[np.ndarray] = None) -> float:
    return float((ranking(log_probs, scores).argmax(1) == labels).mean())


def top_k_accuracy(log_probs: np.ndarray, labels: np.ndarray, k: int = 5, scores: Optional[np.ndarray] = None) -> float:
    order = ranking(log_probs, scores)
    top = np.argpartition(-order, kth=min(k, order.shape[1]) - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(1).mean())


def macro_precision_recall_f1(log_probs: np.ndarray, labels: np.ndarray, scores: Optional[np.ndarray] = None):
    """Unweighted means over all K classes; a class never predicted counts as precision 0."""
    # Imported here: scikit-learn takes about 0.9 s to import, paid by every trial worker that starts if this
    # module imported it, though only the analysis needs it.
    from sklearn.metrics import precision_recall_fscore_support

    num_classes = log_probs.shape[1]
    p, r, f, _ = precision_recall_fscore_support(labels, ranking(log_probs, scores).argmax(1),
                                                 labels=np.arange(num_classes), average="macro", zero_division=0)
    return float(p), float(r), float(f)


def confusion_matrix(log_probs: np.ndarray, labels: np.ndarray, scores: Optional[np.ndarray] = None) -> np.ndarray:
    """[K, K] counts: row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix  # why here: macro_precision_recall_f1

    return sk_confusion_matrix(labels, ranking(log_probs, scores).argmax(1), labels=np.arange(log_probs.shape[1]))


def nll(log_probs: np.ndarray, labels: np.ndarray) -> float:
    picked = log_probs[np.arange(len(labels)), labels]
    return float(-np.maximum(picked, LOG_PROB_FLOOR).mean())


def floored_target_share(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of examples whose target's probability is at or below PROB_FLOOR (their NLL term is the floor's)."""
    picked = log_probs[np.arange(len(labels)), labels]
    return float((picked <= LOG_PROB_FLOOR + 1e-4).mean())  # float32 log(1e-12) is within 1e-6 of the floor


def expected_calibration_error(log_probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS,
                               scores: Optional[np.ndarray] = None) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share of examples per bin.
    Confidence is the probability of the predicted class; a confidence of exactly 1 falls in the last bin."""
    predicted = ranking(log_probs, scores).argmax(1)
    confidence = np.exp(log_probs[np.arange(len(labels)), predicted])
    if not np.isfinite(confidence).all():
        return float("nan")
    correct = predicted == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def superclass_error_share(log_probs: np.ndarray, labels: np.ndarray, coarse_of_fine: Sequence[int],
                           scores: Optional[np.ndarray] = None) -> float:
    """Of the wrong predictions, the share whose predicted class lies in the true class's superclass (NaN: none)."""
    coarse = np.asarray(coarse_of_fine)
    predicted = ranking(log_probs, scores).argmax(1)
    wrong = predicted != labels
    if not wrong.any():
        return float("nan")
    return float((coarse[predicted[wrong]] == coarse[labels[wrong]]).mean())


METRICS = ["accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "nll", "floored_target_share",
           "ece", "superclass_error_share"]


def all_metrics(log_probs: np.ndarray, labels: np.ndarray, coarse_of_fine: Optional[Sequence[int]] = None,
                scores: Optional[np.ndarray] = None) -> dict:
    """Every metric of METRICS (superclass_error_share only with coarse_of_fine); all NaN for a model whose
    log-probabilities or scores are not all finite."""
    names = METRICS if coarse_of_fine is not None else METRICS[:-1]
    if not np.isfinite(log_probs).all() or (scores is not None and not np.isfinite(scores).all()):
        return dict.fromkeys(names, float("nan"))
    precision, recall, f1 = macro_precision_recall_f1(log_probs, labels, scores)
    metrics = {
        "accuracy": accuracy(log_probs, labels, scores),
        "top5_accuracy": top_k_accuracy(log_probs, labels, 5, scores),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "nll": nll(log_probs, labels),
        "floored_target_share": floored_target_share(log_probs, labels),
        "ece": expected_calibration_error(log_probs, labels, scores=scores),
    }
    if coarse_of_fine is not None:
        metrics["superclass_error_share"] = superclass_error_share(log_probs, labels, coarse_of_fine, scores)
    return metrics
