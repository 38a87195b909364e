import numpy as np
import pytest
from sklearn.metrics import f1_score

from study import metrics


def log_probs_from(predictions, num_classes=4, confidence=0.7):
    probs = np.full((len(predictions), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(predictions)), predictions] = confidence
    return np.log(probs)


def test_accuracy_equals_confusion_trace():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    lp = log_probs_from(predictions)
    cm = metrics.confusion_matrix(lp, labels)
    assert cm.shape == (4, 4) and cm.sum() == 50
    assert metrics.accuracy(lp, labels) == pytest.approx(np.trace(cm) / 50)


def test_macro_f1_matches_sklearn_and_counts_unpredicted_classes():
    labels = np.array([0, 1, 2, 3, 3])
    predictions = np.array([0, 1, 1, 3, 3])  # class 2 never predicted: its precision is 0
    p, r, f = metrics.macro_precision_recall_f1(log_probs_from(predictions), labels)
    assert f == pytest.approx(f1_score(labels, predictions, average="macro", zero_division=0))
    assert r == pytest.approx((1 + 1 + 0 + 1) / 4) and p == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_top5():
    lp = np.log(np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05]]))
    assert metrics.top_k_accuracy(lp, np.array([4]), 5) == 1.0
    assert metrics.top_k_accuracy(lp, np.array([4]), 4) == 0.0


def test_nll_and_its_floor():
    lp = np.log(np.array([[0.5, 0.5, 0.0]]) + 1e-300)
    assert metrics.nll(lp, np.array([0])) == pytest.approx(np.log(2))
    assert metrics.nll(lp, np.array([2])) == pytest.approx(-np.log(1e-12))


def test_ece_zero_when_calibrated_and_positive_when_overconfident():
    labels = np.array([0] * 7 + [1] * 3)
    calibrated = log_probs_from(np.zeros(10, dtype=int), num_classes=2, confidence=0.7)
    assert metrics.expected_calibration_error(calibrated, labels) == pytest.approx(0.0, abs=1e-12)
    overconfident = log_probs_from(np.zeros(10, dtype=int), num_classes=2, confidence=0.99)
    assert metrics.expected_calibration_error(overconfident, labels) == pytest.approx(0.29)


def test_superclass_error_share():
    coarse = [0, 0, 1, 1]
    labels = np.array([0, 0, 2, 2])
    predictions = np.array([1, 2, 3, 2])  # errors: 0->1 same super, 0->2 other, 2->3 same super
    share = metrics.superclass_error_share(log_probs_from(predictions), labels, coarse)
    assert share == pytest.approx(2 / 3)


def test_all_metrics_keys():
    lp = log_probs_from(np.array([0, 1, 2, 3]))
    result = metrics.all_metrics(lp, np.array([0, 1, 2, 0]), coarse_of_fine=[0, 0, 1, 1])
    assert set(result) == {"accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "nll", "ece",
                           "superclass_error_share"}
    assert result["accuracy"] == 0.75
