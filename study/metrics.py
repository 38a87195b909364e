"""Classification metrics from saved predictions: log-probabilities [N, K] and true labels [N]."""
from typing import Optional, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

NLL_FLOOR = np.log(1e-12)  # sparse heads give probability 0 to some classes; floor log p so NLL stays finite


def accuracy(log_probs: np.ndarray, labels: np.ndarray) -> float:
    return float((log_probs.argmax(1) == labels).mean())


def top_k_accuracy(log_probs: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    top = np.argpartition(-log_probs, kth=min(k, log_probs.shape[1]) - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(1).mean())


def macro_precision_recall_f1(log_probs: np.ndarray, labels: np.ndarray):
    """Unweighted means over all K classes; a class never predicted counts as precision 0."""
    num_classes = log_probs.shape[1]
    p, r, f, _ = precision_recall_fscore_support(labels, log_probs.argmax(1), labels=np.arange(num_classes),
                                                 average="macro", zero_division=0)
    return float(p), float(r), float(f)


def confusion_matrix(log_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[K, K] counts: row = true class, column = predicted class."""
    return sk_confusion_matrix(labels, log_probs.argmax(1), labels=np.arange(log_probs.shape[1]))


def nll(log_probs: np.ndarray, labels: np.ndarray) -> float:
    picked = log_probs[np.arange(len(labels)), labels]
    return float(-np.maximum(picked, NLL_FLOOR).mean())


def expected_calibration_error(log_probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by the share of examples per bin."""
    confidence = np.exp(log_probs.max(1))
    correct = log_probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def superclass_error_share(log_probs: np.ndarray, labels: np.ndarray, coarse_of_fine: Sequence[int]) -> float:
    """Of the wrong predictions, the share whose predicted class lies in the true class's superclass (NaN: none)."""
    coarse = np.asarray(coarse_of_fine)
    predicted = log_probs.argmax(1)
    wrong = predicted != labels
    if not wrong.any():
        return float("nan")
    return float((coarse[predicted[wrong]] == coarse[labels[wrong]]).mean())


def all_metrics(log_probs: np.ndarray, labels: np.ndarray, coarse_of_fine: Optional[Sequence[int]] = None) -> dict:
    precision, recall, f1 = macro_precision_recall_f1(log_probs, labels)
    metrics = {
        "accuracy": accuracy(log_probs, labels),
        "top5_accuracy": top_k_accuracy(log_probs, labels, 5),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "nll": nll(log_probs, labels),
        "ece": expected_calibration_error(log_probs, labels),
    }
    if coarse_of_fine is not None:
        metrics["superclass_error_share"] = superclass_error_share(log_probs, labels, coarse_of_fine)
    return metrics
