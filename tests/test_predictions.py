"""The compact predictions (study/predictions.py) against the full [N, K] outputs they replace: every metric agrees
with the full-matrix computation used before them (kept here as the reference), on random models and on the
checked-in fixture run's saved models; batches, files and confusions at any K."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import confusions, retrain
from study.files import load_arrays, save_arrays
from study.metrics import LOG_PROB_FLOOR, compact_metrics, confusion_matrix, confusion_pairs
from study.predictions import ARRAYS, TOP_K, Compact

FIXTURE_PREDICTIONS = Path(__file__).parent / "fixtures" / "tiny_run" / "analysis" / "predictions"


def full_matrix_metrics(log_probs, labels, coarse_of_fine=None, scores=None) -> dict:
    """The metrics as computed from the whole [N, K] matrices before the compact format (study/metrics.py at
    25586a0), with scikit-learn for precision, recall and F1."""
    from sklearn.metrics import precision_recall_fscore_support

    order = log_probs if scores is None else scores
    if not np.isfinite(log_probs).all() or (scores is not None and not np.isfinite(scores).all()):
        return {}
    predicted = order.argmax(1)
    rows = np.arange(len(labels))
    top = np.argpartition(-order, kth=min(5, order.shape[1]) - 1, axis=1)[:, :5]
    p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=np.arange(log_probs.shape[1]),
                                                 average="macro", zero_division=0)
    picked = log_probs[rows, labels]
    confidence = np.exp(log_probs[rows, predicted])
    which = np.minimum((confidence * 15).astype(int), 14)
    ece = sum((which == b).mean() * abs((predicted == labels)[which == b].mean() - confidence[which == b].mean())
              for b in range(15) if (which == b).any())
    found = {"accuracy": (predicted == labels).mean(), "top5_accuracy": (top == labels[:, None]).any(1).mean(),
             "precision_macro": p, "recall_macro": r, "f1_macro": f,
             "nll": -np.maximum(picked, LOG_PROB_FLOOR).mean(),
             "floored_target_share": (picked <= LOG_PROB_FLOOR + 1e-4).mean(), "ece": ece}
    if coarse_of_fine is not None:
        coarse, wrong = np.asarray(coarse_of_fine), predicted != labels
        found["superclass_error_share"] = (coarse[predicted[wrong]] == coarse[labels[wrong]]).mean()
    return found


def random_model(rows=2000, classes=100, seed=0, sparse=False):
    """Log-probabilities of a model that is right 42 % of the time; `sparse`: most classes at the floor
    (tied), with scores that rank them, as a sparse head's."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, rows)
    logits = rng.normal(0, 1.5, (rows, classes))
    logits[np.arange(rows), labels] += 3.5
    log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    scores = None
    if sparse:
        scores = logits.astype(np.float32)
        log_probs = np.where(logits > np.quantile(logits, 0.9, axis=1, keepdims=True), log_probs, LOG_PROB_FLOOR)
    return log_probs.astype(np.float32), labels, scores


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse with scores"])
def test_every_metric_agrees_with_the_full_matrices_at_k_100(sparse):
    log_probs, labels, scores = random_model(sparse=sparse)
    coarse = [k // 5 for k in range(100)]
    expected = full_matrix_metrics(log_probs, labels, coarse, scores)
    found = compact_metrics(Compact.of(log_probs, labels, scores), coarse)
    assert set(found) == set(expected)
    for name in expected:
        assert found[name] == pytest.approx(expected[name], abs=1e-6), name
    assert 0.2 < found["accuracy"] < 0.6  # neither trivial nor perfect
    if sparse:
        assert found["floored_target_share"] > 0


def test_the_fixture_runs_saved_models_score_the_same_from_their_compact_form(tmp_path):
    """Each checked-in final model (saved with its full [N, K] outputs) scores the same when read as compact
    predictions, and again after they are saved in the compact format and read back."""
    files = sorted(FIXTURE_PREDICTIONS.glob("*_seed*.npz"))
    assert files
    for npz in files:
        head, seed = npz.stem.rsplit("_seed", 1)
        full = load_arrays(npz)
        assert "log_probs" in full  # the format before the compact one
        expected = full_matrix_metrics(full["log_probs"], full["labels"], None, full.get("scores"))
        loaded = retrain.load_predictions(FIXTURE_PREDICTIONS, head, int(seed)).compact
        save_arrays(tmp_path / npz.name, **loaded.arrays())
        again = Compact.from_arrays(load_arrays(tmp_path / npz.name))
        for compact in (loaded, again):
            found = compact_metrics(compact)
            for name in expected:
                assert found[name] == pytest.approx(expected[name], abs=1e-6), (npz.name, name)


def test_batches_concatenate_to_the_whole_split():
    log_probs, labels, scores = random_model(rows=1000, sparse=True)
    whole = Compact.of(log_probs, labels, scores)
    parts = Compact.concat([Compact.of(log_probs[i:i + 96], labels[i:i + 96], scores[i:i + 96])
                            for i in range(0, 1000, 96)])
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name))
    assert (parts.num_classes, parts.finite, len(parts)) == (100, True, 1000)


def test_the_top_classes_are_the_rankings_first_five_best_first():
    log_probs, labels, scores = random_model(rows=300, classes=40, sparse=True)
    c = Compact.of(log_probs, labels, scores)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K]
    np.testing.assert_array_equal(c.top_classes, expected)
    np.testing.assert_array_equal(c.predicted, scores.argmax(1))
    np.testing.assert_array_equal(c.top_log_probs, np.take_along_axis(log_probs, expected, 1))
    np.testing.assert_array_equal(c.target_log_prob, log_probs[np.arange(300), labels])
    few = Compact.of(log_probs[:, :3], np.minimum(labels, 2))  # fewer classes than TOP_K: all of them
    assert few.top_classes.shape == (300, 3)


def test_a_model_with_a_non_finite_output_is_marked_and_scores_nan():
    log_probs, labels, _ = random_model(rows=50)
    log_probs[7, 3] = np.nan
    c = Compact.of(log_probs, labels)
    assert not c.finite and all(np.isnan(v) for v in compact_metrics(c).values())


def test_the_compact_arrays_at_ten_thousand_classes_are_small():
    """100,000 rows at K = 10,000: 4 GB as float32 log-probabilities; the compact arrays are 6.4 MB, 64 bytes a row,
    whatever K."""
    rows, classes, k = 100_000, 10_000, TOP_K
    c = Compact(labels=np.zeros(rows, np.int64), predicted=np.zeros(rows, np.int64),
                predicted_log_prob=np.zeros(rows, np.float32), target_log_prob=np.zeros(rows, np.float32),
                top_classes=np.zeros((rows, k), np.int32), top_log_probs=np.zeros((rows, k), np.float32),
                num_classes=classes, finite=True)
    size = sum(np.asarray(v).nbytes for v in c.arrays().values())
    assert size == 64 * rows + 8 + 1 and size < rows * classes * 4 / 500


def test_confusion_pairs_are_the_matrixs_non_zero_cells():
    log_probs, labels, _ = random_model(rows=3000, classes=30, seed=3)
    c = Compact.of(log_probs, labels)
    matrix = confusion_matrix(c)
    true, predicted, counts = confusion_pairs(c)
    rebuilt = np.zeros_like(matrix)
    rebuilt[true, predicted] = counts
    np.testing.assert_array_equal(rebuilt, matrix)
    assert (counts > 0).all() and matrix.sum() == 3000


def test_the_most_frequent_confusions_and_the_per_class_scores():
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    predicted = np.array([1, 1, 2, 0, 0, 0, 1, 1, 2, 0])  # 0->1 twice, 1->0 twice, 0->2, 2->1, 3->0 once
    log_probs = np.log(np.full((10, 4), 0.1))
    log_probs[np.arange(10), predicted] = np.log(0.7)
    c = Compact.of(log_probs, labels)
    table = confusions.top_confusions(c, ["a", "b", "c", "d"])
    assert list(zip(table["true class"], table["predicted class"], table["count"])) == [
        ("a", "b", 2), ("b", "a", 2), ("a", "c", 1), ("c", "b", 1), ("d", "a", 1)]
    assert table["share of true class"].tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 4, 1 / 2, 1 / 1])
    assert len(confusions.top_confusions(c, ["a", "b", "c", "d"], limit=2)) == 2
    frame = confusions.per_class_frame(c, ["a", "b", "c", "d"])
    p, r, f, support = precision_recall_fscore_support(labels, predicted, labels=range(4), zero_division=0)
    np.testing.assert_allclose(frame[["precision", "recall", "f1"]].to_numpy(), np.column_stack([p, r, f]))
    assert frame["support"].tolist() == support.tolist()


def test_above_the_matrix_limit_the_analysis_writes_the_top_confusions_not_a_k_by_k_matrix(tmp_path, monkeypatch):
    monkeypatch.setattr(confusions, "MATRIX_CLASSES", 20)
    log_probs, labels, _ = random_model(rows=600, classes=30, seed=4)
    record = {"fine_names": [f"c{k}" for k in range(30)], "coarse_of_fine": [k // 10 for k in range(30)],
              "coarse_names": ["x", "y", "z"]}
    predictions = {("softmax", s): retrain.Prediction(Compact.of(log_probs, labels), record) for s in (1, 2)}
    per_seed = pd.DataFrame({"head": ["softmax", "softmax"], "seed": [1, 2], "diverged": [False, False]})
    pngs, tables = confusions.write(tmp_path, predictions, per_seed)
    assert pngs == {} and not (tmp_path / "softmax.csv").exists()
    top = pd.read_csv(tmp_path / "softmax_top_confusions.csv")
    assert top["count"].is_monotonic_decreasing and top["count"].iloc[0] % 2 == 0  # two identical seeds
    per_class = pd.read_csv(tmp_path / "softmax_per_class.csv")
    assert per_class["support"].sum() == 1200 and list(per_class["class"][:2]) == ["c0", "c1"]
    superclass = pd.read_csv(tmp_path / "softmax_superclass.csv", index_col=0)
    assert superclass.to_numpy().sum() == 1200 and list(superclass.columns) == ["x", "y", "z"]
    lines = "\n".join(confusions.report_lines(tables))
    assert "## Most frequent confusions" in lines and "**softmax**" in lines
    assert confusions.report_lines({}) == []


def test_saved_predictions_that_are_partial_or_out_of_range_are_trained_again_not_read(tmp_path):
    """A final model's .npz that loads but lacks an array, has arrays of different lengths or classes outside
    0 .. K-1 is not reused (it would crash the analysis): it counts as missing and is trained again."""
    from analysis.configs import as_json
    from study.config import TrainConfig
    from study.predictions import saved_problem
    from study.search.rundir import prediction_files

    config = TrainConfig()
    job = retrain.Job("softmax", 1, config)
    log_probs, labels, _ = random_model(rows=40, classes=12)
    retrain.save(tmp_path, job, Compact.of(log_probs, labels),
                 {"format": retrain.RECORD_FORMAT, "config": as_json(config), "history": []}, timed_alone=True)
    assert retrain.is_cached(tmp_path, job)
    npz = prediction_files(tmp_path, "softmax", 1)[0]
    whole = load_arrays(npz)
    damaged = {"no top classes": {k: v for k, v in whole.items() if k != "top_classes"},
               "short": {**whole, "predicted": whole["predicted"][:3]},
               "class 12 of 12": {**whole, "predicted": np.full_like(whole["predicted"], 12)}}
    for name, arrays in damaged.items():
        assert saved_problem(arrays) is not None, name
        save_arrays(npz, **arrays)
        assert not retrain.is_cached(tmp_path, job), name
    assert saved_problem(whole) is None
    assert saved_problem({"log_probs": log_probs, "labels": labels}) is None  # the format before
    assert saved_problem({"log_probs": log_probs, "labels": labels[:5]}) is not None
