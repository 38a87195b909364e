"""Ten thousand classes, end to end: every head's search, final models, timing protocol, convergence check and
report on a synthetic features file with K = 10,000, and nothing written grows with N x K (a K x K confusion CSV
would be 800 MB, a final model's log-probabilities 4 GB at 100,000 test rows)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from study.files import save_arrays
from study.heads import list_heads
from study.synthetic import generate

REPO = Path(__file__).resolve().parent.parent
CLASSES = 10_000
SEEN_CLASSES = 200  # with training rows: the epochs' cost grows with rows x K, and every output has all 10,000
LARGEST_FILE = 50e6  # bytes


def ten_thousand_classes(path: Path) -> None:
    """A synthetic file's hierarchy and class names at K = 10,000 (uniform class frequencies: three training rows
    and one test row per class), keeping the rows of SEEN_CLASSES classes: 600 training and 200 test rows."""
    arrays = generate(CLASSES, dim=16, train=3 * CLASSES, test=CLASSES, zipf=0.0, seed=0)
    seen = np.random.default_rng(0).permutation(CLASSES)[:SEEN_CLASSES]
    train, test = np.isin(arrays["train_labels"], seen), np.isin(arrays["test_labels"], seen)
    save_arrays(path, **{**arrays, "train_features": arrays["train_features"][train],
                         "train_labels": arrays["train_labels"][train],
                         "test_features": arrays["test_features"][test], "test_labels": arrays["test_labels"][test]})


def test_a_study_at_ten_thousand_classes_runs_every_head_and_writes_nothing_of_size_n_by_k(tmp_path, shared_ray):
    data = tmp_path / "k10000.npz"
    ten_thousand_classes(data)
    heads = [h for h in list_heads() if not h.startswith("test_")]
    result = subprocess.run([sys.executable, str(REPO / "study" / "tune.py"), "--head", "all", "--preset",
                             "smoke-frozen", "--data", f"features:{data}", "--storage", str(tmp_path / "runs"),
                             "--name", "k10000", "--address", shared_ray], capture_output=True, text=True,
                            timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "runs" / "k10000" / "analysis"
    results = pd.read_csv(out / "results.csv")
    assert sorted(set(results["head"])) == sorted(heads) and (results["num_classes"] == CLASSES).all()
    report = (out / "summary.md").read_text()
    assert "## Most frequent confusions" in report
    for head in heads:
        assert (out / "confusion" / f"{head}_top_confusions.csv").is_file()
        per_class = pd.read_csv(out / "confusion" / f"{head}_per_class.csv")
        assert len(per_class) == CLASSES
        assert not (out / "confusion" / f"{head}.csv").exists()  # no K x K matrix
    for npz in (out / "predictions").glob("*_seed*.npz"):  # compact: 64 bytes a test row, no [N, K] outputs
        with np.load(npz, allow_pickle=False) as saved:
            assert "log_probs" not in saved.files and "scores" not in saved.files
            assert sum(saved[name].nbytes for name in saved.files) < 64 * len(saved["labels"]) + 100
    sizes = {path: path.stat().st_size for path in (tmp_path / "runs").rglob("*") if path.is_file()}
    largest = max(sizes, key=sizes.get)
    assert sizes[largest] < LARGEST_FILE, (largest, sizes[largest])
