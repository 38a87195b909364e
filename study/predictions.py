"""What an evaluation keeps of each example: enough for every metric, the significance tests and the confusions,
never a [N, K] matrix. At K = 10,000 and 100,000 test rows, the full log-probabilities are 4 GB per model (8 GB with
the sparse heads' scores); these arrays are 6.4 MB (64 bytes per example).

Per example: the true class, the class the model ranks first and its log-probability (accuracy, precision, recall,
F1, the confusions, ECE's confidence), the true class's log-probability (NLL, the floored share), and the TOP_K
first classes of the ranking with their log-probabilities (top-5 accuracy). The ranking is the head's own scores
where its log-probabilities tie (sparse heads), else its log-probabilities: study/metrics.py, ranking.
"""
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

TOP_K = 5  # classes kept per example, best first: top-5 accuracy
CHUNK_ROWS = 512  # rows made compact at a time (Compact.of)


@dataclass(frozen=True)
class Compact:
    labels: np.ndarray  # int64 [N], the true classes
    predicted: np.ndarray  # int64 [N], the class ranked first (the first of several tied, as argmax)
    predicted_log_prob: np.ndarray  # float32 [N], the log-probability of `predicted`
    target_log_prob: np.ndarray  # float32 [N], the log-probability of the true class
    top_classes: np.ndarray  # int32 [N, k], the k classes ranked first, best first (k = min(TOP_K, K)); with ties
    # at the top, its first may differ from `predicted` (argmax: the lowest class), so both are kept
    top_log_probs: np.ndarray  # float32 [N, k], their log-probabilities
    num_classes: int
    finite: bool  # every log-probability (and score) was finite; a model that is not gets NaN metrics

    def __len__(self):
        return len(self.labels)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels

    @classmethod
    def of(cls, log_probs: np.ndarray, labels: np.ndarray, scores: Optional[np.ndarray] = None,
           k: int = TOP_K) -> "Compact":
        """From one batch's (or a whole split's) full outputs: log_probs [N, K], labels [N], scores [N, K] or None
        (the ranking is the log-probabilities). Taken CHUNK_ROWS rows at a time: the top-k's partition holds an
        index per entry (an evaluation batch of 4,096 rows at K = 10,000 would need 328 MB for it at once)."""
        if len(labels) > CHUNK_ROWS:
            return cls.concat([cls.of_chunk(log_probs[i:i + CHUNK_ROWS], labels[i:i + CHUNK_ROWS],
                                            None if scores is None else scores[i:i + CHUNK_ROWS], k)
                               for i in range(0, len(labels), CHUNK_ROWS)])
        return cls.of_chunk(log_probs, labels, scores, k)

    @classmethod
    def of_chunk(cls, log_probs, labels, scores, k: int) -> "Compact":
        log_probs = np.asarray(log_probs, np.float32)
        labels = np.asarray(labels, np.int64)
        order = log_probs if scores is None else np.asarray(scores, np.float32)
        rows, num_classes = log_probs.shape
        k = min(k, num_classes)
        finite = bool(np.isfinite(log_probs).all() and (scores is None or np.isfinite(order).all()))
        predicted = order.argmax(1) if rows else np.zeros(0, np.int64)
        every = np.arange(rows)
        # The same partition as the full-matrix top-k (which of several classes tied at the k-th place it keeps is
        # numpy's choice, as it was), then its k sorted best first (ties among them: the lower class first).
        top = np.argpartition(-order, kth=k - 1, axis=1)[:, :k] if rows else np.zeros((0, k), np.int64)
        ranked = np.lexsort((top, -np.take_along_axis(order, top, 1)), axis=1)
        top = np.take_along_axis(top, ranked, 1)
        return cls(labels=labels, predicted=predicted.astype(np.int64),
                   predicted_log_prob=log_probs[every, predicted], target_log_prob=log_probs[every, labels],
                   top_classes=top.astype(np.int32), top_log_probs=np.take_along_axis(log_probs, top, 1),
                   num_classes=num_classes, finite=finite)

    @classmethod
    def concat(cls, parts: Sequence["Compact"]) -> "Compact":
        """One split's arrays from its batches' (in order)."""
        first = parts[0]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in ARRAYS},
                   num_classes=first.num_classes, finite=all(p.finite for p in parts))

    def arrays(self) -> dict:
        """Plain arrays to save (study/files.py: save_arrays); from_arrays reads them back."""
        return {**{name: getattr(self, name) for name in ARRAYS}, "num_classes": np.int64(self.num_classes),
                "finite": np.bool_(self.finite)}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "Compact":
        return cls(**{name: arrays[name] for name in ARRAYS}, num_classes=int(arrays["num_classes"]),
                   finite=bool(arrays["finite"]))


ARRAYS = ("labels", "predicted", "predicted_log_prob", "target_log_prob", "top_classes", "top_log_probs")
FULL_ARRAYS = ("log_probs", "labels")  # the format before: the full outputs (and "scores" for sparse heads)


def saved_problem(arrays: dict) -> Optional[str]:
    """What makes saved predictions unusable, in a few words, or None: either the compact arrays (every one, of one
    length, classes within 0 .. K-1) or the full outputs of the format before (log_probs [N, K] and labels [N])."""
    if "log_probs" in arrays:
        missing = [name for name in FULL_ARRAYS if name not in arrays]
        log_probs = arrays["log_probs"]
        if missing or log_probs.ndim != 2 or len(log_probs) != len(arrays["labels"]):
            return f"full outputs incomplete ({', '.join(missing) or 'shapes differ'})"
        return None
    missing = [name for name in (*ARRAYS, "num_classes", "finite") if name not in arrays]
    if missing:
        return f"no {', '.join(missing)}"
    rows = {len(arrays[name]) for name in ARRAYS}
    classes = int(arrays["num_classes"])
    if len(rows) != 1 or arrays["top_classes"].shape != arrays["top_log_probs"].shape:
        return "arrays of different lengths"
    for name in ("labels", "predicted", "top_classes"):
        values = arrays[name]
        if values.size and (values.min() < 0 or values.max() >= classes):
            return f"{name} outside 0 .. {classes - 1}"
    return None
