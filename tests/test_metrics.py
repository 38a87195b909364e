"""Every metric against an independent reference: hand-computed small cases, direct loops written here, or
sklearn/scipy used differently from the code."""
import math

import numpy as np
import pytest

from study import metrics
from study.predictions import Compact


def c(log_probs, labels, scores=None):
    """A model's compact predictions from its full outputs, as an evaluation keeps them."""
    return Compact.of(np.asarray(log_probs), np.asarray(labels), scores)


def log_probs_from(predictions, num_classes=4, confidence=0.7):
    probs = np.full((len(predictions), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(predictions)), predictions] = confidence
    return np.log(probs)


def test_accuracy_against_a_loop():
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(7), size=60))
    labels = rng.integers(0, 7, 60)
    hits = 0
    for row, label in zip(lp, labels):
        hits += max(range(7), key=lambda k: row[k]) == label
    assert metrics.accuracy(c(lp, labels)) == pytest.approx(hits / 60)


def test_confusion_matrix_rows_are_true_classes():
    labels = np.array([0, 0, 0, 1, 2])
    predictions = np.array([1, 1, 0, 2, 2])  # asymmetric: a transposed matrix differs
    expected = np.array([[1, 2, 0],
                         [0, 0, 1],
                         [0, 0, 1]])
    np.testing.assert_array_equal(metrics.confusion_matrix(c(log_probs_from(predictions, 3), labels)), expected)


def test_confusion_matrix_keeps_classes_never_seen():
    labels, predictions = np.array([0, 2, 2]), np.array([2, 2, 0])  # class 1 and 3 appear nowhere
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 2] = expected[2, 2] = expected[2, 0] = 1
    np.testing.assert_array_equal(metrics.confusion_matrix(c(log_probs_from(predictions, 4), labels)), expected)


def test_macro_precision_recall_f1_by_hand():
    labels = np.array([0, 1, 2, 3, 3])
    predictions = np.array([0, 1, 1, 3, 3])  # class 2 never predicted: its precision is 0
    p, r, f = metrics.macro_precision_recall_f1(c(log_probs_from(predictions), labels))
    precision = [1, 0.5, 0, 1]
    recall = [1, 1, 0, 1]
    f1 = [2 * a * b / (a + b) if a + b else 0 for a, b in zip(precision, recall)]
    assert p == pytest.approx(np.mean(precision)) and r == pytest.approx(np.mean(recall))
    assert f == pytest.approx(np.mean(f1))  # mean of per-class F1, not F1 of the means


def test_top_k_by_hand():
    lp = np.log(np.array([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05]]))
    assert metrics.top_k_accuracy(c(lp, np.array([4])), 5) == 1.0
    assert metrics.top_k_accuracy(c(lp, np.array([4])), 4) == 0.0
    assert metrics.top_k_accuracy(c(lp, np.array([0])), 1) == 1.0


def test_ranking_metrics_use_the_models_scores_where_probabilities_tie():
    # A sparse head: classes 2..5 all have probability 0 (log p at the floor), but its scores order them.
    floor = metrics.LOG_PROB_FLOOR
    lp = np.array([[np.log(0.6), np.log(0.4), floor, floor, floor, floor]])
    scores = np.array([[3.0, 2.5, -1.0, -2.0, -3.0, 0.5]])  # class 5 ranks third
    labels = np.array([5])
    assert metrics.top_k_accuracy(c(lp, labels), 3) == 0.0  # ties broken by class index, not by the model
    assert metrics.top_k_accuracy(c(lp, labels, scores), 3) == 1.0
    assert metrics.all_metrics(lp, labels, scores=scores)["top5_accuracy"] == 1.0


def test_nll_by_hand_with_one_floor_for_every_head():
    lp = np.log(np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 1e-300]]))
    assert metrics.nll(c(lp, np.array([1, 0]))) == pytest.approx((math.log(4) + math.log(2)) / 2)
    assert metrics.nll(c(lp, np.array([0, 2]))) == pytest.approx((math.log(2) + -math.log(1e-12)) / 2)
    assert metrics.PROB_FLOOR == 1e-12


def test_floored_target_share_counts_targets_outside_the_support():
    lp = np.log(np.array([[0.5, 0.5, 1e-12], [1.0, 1e-12, 1e-12], [0.2, 0.3, 0.5]], dtype=np.float32))
    assert metrics.floored_target_share(c(lp, np.array([2, 1, 0]))) == pytest.approx(2 / 3)
    assert metrics.floored_target_share(c(lp, np.array([0, 0, 2]))) == 0.0


def reference_ece(confidence, correct, bins):
    """Bins [0, 1/B), [1/B, 2/B), ..., [(B-1)/B, 1]: found by comparing with the edges, not by flooring."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for b in range(bins):
        upper = confidence <= edges[b + 1] if b == bins - 1 else confidence < edges[b + 1]
        members = (confidence >= edges[b]) & upper
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return total


def test_ece_by_hand_depends_on_fifteen_bins():
    # Confidences 0.64 (right) and 0.68 (wrong) share a bin of 10 but not of 15: 0.52 with 15 bins, 0.16 with 10.
    lp = np.log(np.array([[0.64, 0.36], [0.68, 0.32]]))
    labels = np.array([0, 1])
    assert metrics.expected_calibration_error(c(lp, labels)) == pytest.approx(0.5 * 0.36 + 0.5 * 0.68)
    assert metrics.expected_calibration_error(c(lp, labels), bins=10) == pytest.approx(abs(0.5 - 0.66))


def test_ece_matches_a_reference_on_random_predictions():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(5, 0.3), size=400)
    labels = rng.integers(0, 5, 400)
    confidence, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    assert metrics.expected_calibration_error(c(np.log(probs), labels)) == pytest.approx(
        reference_ece(confidence, correct, 15))


def test_ece_confidence_of_exactly_one_and_no_errors():
    lp = np.log(np.array([[1.0, 0.0 + 1e-300], [1.0, 1e-300]]))
    assert metrics.expected_calibration_error(c(lp, np.array([0, 0]))) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(c(lp, np.array([1, 1]))) == pytest.approx(1.0)


def test_ece_of_calibrated_and_overconfident_predictions():
    labels = np.array([0] * 7 + [1] * 3)
    calibrated = log_probs_from(np.zeros(10, dtype=int), num_classes=2, confidence=0.7)
    assert metrics.expected_calibration_error(c(calibrated, labels)) == pytest.approx(0.0, abs=1e-6)  # float32 kept
    overconfident = log_probs_from(np.zeros(10, dtype=int), num_classes=2, confidence=0.99)
    assert metrics.expected_calibration_error(c(overconfident, labels)) == pytest.approx(0.29)


def test_a_diverged_model_gets_no_score():
    lp = np.full((4, 3), np.nan)
    labels = np.array([0, 1, 2, 0])
    assert math.isnan(metrics.expected_calibration_error(c(lp, labels)))  # NaN lands in no bin: it used to give 0
    result = metrics.all_metrics(lp, labels, coarse_of_fine=[0, 0, 1])
    assert set(result) == set(metrics.METRICS) and all(math.isnan(v) for v in result.values())
    partly = log_probs_from(np.array([0, 1, 2, 0]), 3)
    partly[1, 2] = np.inf
    assert all(math.isnan(v) for v in metrics.all_metrics(partly, labels).values())


def test_superclass_error_share():
    coarse = [0, 0, 1, 1]
    labels = np.array([0, 0, 2, 2])
    predictions = np.array([1, 2, 3, 2])  # errors: 0->1 same super, 0->2 other, 2->3 same super
    assert metrics.superclass_error_share(c(log_probs_from(predictions), labels), coarse) == pytest.approx(2 / 3)
    assert math.isnan(metrics.superclass_error_share(c(log_probs_from(labels), labels), coarse))  # no errors


def test_all_metrics_keys_and_values():
    lp = log_probs_from(np.array([0, 1, 2, 3]))
    result = metrics.all_metrics(lp, np.array([0, 1, 2, 0]), coarse_of_fine=[0, 0, 1, 1])
    assert list(result) == metrics.METRICS
    assert result["accuracy"] == 0.75 and result["nll"] == pytest.approx(-(3 * np.log(0.7) + np.log(0.1)) / 4)
    assert "superclass_error_share" not in metrics.all_metrics(lp, np.array([0, 1, 2, 0]))


def test_every_ranking_metric_uses_the_scores():
    """Scores that put class 2 first where the log-probabilities put class 0 first change every ranking metric."""
    lp = np.log(np.array([[0.6, 0.3, 0.1, 1e-12], [0.6, 0.3, 0.1, 1e-12]]))
    scores = np.array([[1.0, 0.0, 2.0, -1.0], [1.0, 0.0, 2.0, -1.0]])
    labels = np.array([2, 2])
    assert metrics.accuracy(c(lp, labels)) == 0.0 and metrics.accuracy(c(lp, labels, scores)) == 1.0
    assert metrics.macro_precision_recall_f1(c(lp, labels, scores)) == pytest.approx((0.25, 0.25, 0.25))
    assert metrics.confusion_matrix(c(lp, labels, scores))[2, 2] == 2
    assert metrics.expected_calibration_error(c(lp, labels, scores)) == pytest.approx(1 - 0.1)
    assert metrics.superclass_error_share(c(lp, labels), [0, 0, 1, 1]) == 0.0  # 2 -> 0: another superclass
    assert math.isnan(metrics.superclass_error_share(c(lp, labels, scores), [0, 0, 1, 1]))  # no errors by the scores
    result = metrics.all_metrics(lp, labels, [0, 0, 1, 1], scores)
    assert (result["accuracy"], result["precision_macro"], result["ece"]) == pytest.approx((1.0, 0.25, 0.9))
    assert math.isnan(result["superclass_error_share"])


def test_macro_averages_over_every_class_even_absent_ones():
    labels, predictions = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])  # perfect on 2 of 4 classes
    assert metrics.macro_precision_recall_f1(c(log_probs_from(predictions), labels)) == pytest.approx((0.5, 0.5, 0.5))


def test_top_k_against_sorting_on_many_rows():
    rng = np.random.default_rng(2)
    lp = np.log(rng.dirichlet(np.ones(12), size=200))
    labels = rng.integers(0, 12, 200)
    for k in (1, 3, 5):  # the compact predictions keep the first five classes
        expected = np.mean([label in np.argsort(-row)[:k] for row, label in zip(lp, labels)])
        assert metrics.top_k_accuracy(c(lp, labels), k) == pytest.approx(expected)
    assert metrics.top_k_accuracy(c(lp, labels)) == metrics.top_k_accuracy(c(lp, labels), 5)
    assert metrics.all_metrics(lp, labels)["top5_accuracy"] == metrics.top_k_accuracy(c(lp, labels), 5)


def test_ece_puts_a_confidence_of_one_in_the_last_bin_alone():
    lp = np.log(np.array([[0.9, 0.1], [1.0, 1e-300]]))  # bins 13 and 14 of 15
    assert metrics.expected_calibration_error(c(lp, np.array([0, 1]))) == pytest.approx(0.5 * 0.1 + 0.5 * 1.0)


def test_floored_share_counts_only_the_floor():
    lp = np.log(np.array([[0.5, 0.5 - 2e-12, 2e-12]]))  # twice the floor: not at it
    assert metrics.floored_target_share(c(lp, np.array([2]))) == 0.0


def test_all_nan_metrics_without_superclasses():
    assert list(metrics.all_metrics(np.full((2, 3), np.nan), np.array([0, 1]))) == metrics.METRICS[:-1]
