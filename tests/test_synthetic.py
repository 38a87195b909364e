"""The synthetic many-class features file (study/synthetic.py): a tree, Zipf frequencies, every class in
training, plain arrays, labelled synthetic; the answers are worked out here, not by the generator's formulas."""
import subprocess
import sys

import numpy as np
import pytest

from study.synthetic import build_parser, generate, hierarchy

PROJECT = __import__("pathlib").Path(__file__).resolve().parent.parent


def walk_to_root(parents, node):
    seen = []
    while node != -1:
        assert node not in seen, f"cycle through {node}"
        seen.append(node)
        node = parents[node]
    return seen


@pytest.mark.parametrize("classes,branching", [(2, 10), (10, 10), (11, 3), (100, 10), (1000, 7)])
def test_the_hierarchy_is_a_tree_whose_leaves_are_the_classes(classes, branching):
    parents, depth = hierarchy(classes, branching)
    roots = [n for n in range(len(parents)) if parents[n] == -1]
    assert len(roots) == 1 and roots[0] >= classes  # the root is a group, not a class
    for node in range(len(parents)):
        path = walk_to_root(parents, node)
        assert path[-1] == roots[0] and len(path) - 1 == depth[node]
    children = np.bincount(parents[parents >= 0], minlength=len(parents))
    assert (children[:classes] == 0).all()  # classes are leaves
    assert (children[classes:] >= 2).all() and (children[classes:] <= branching).all()  # groups really branch


def test_class_frequencies_follow_the_zipf_law_and_every_class_trains():
    arrays = generate(classes=20, dim=4, train=200_000, test=20, zipf=1.0, seed=1)
    counts = np.bincount(arrays["train_labels"], minlength=20)
    harmonic = sum(1 / k for k in range(1, 21))
    expected = [200_000 / (k * harmonic) for k in range(1, 21)]  # class k-1 has weight 1/k
    np.testing.assert_allclose(counts, expected, rtol=0.05)
    rare = generate(classes=50, dim=4, train=50, test=10, zipf=3.0, seed=0)
    assert sorted(rare["train_labels"]) == list(range(50))  # as few examples as classes: one each


def test_siblings_are_closer_than_strangers():
    arrays = generate(classes=100, dim=32, train=20_000, test=10, seed=2)
    features, labels, parents = arrays["train_features"], arrays["train_labels"], arrays["parents"]
    means = np.stack([features[labels == k].mean(0) for k in range(100)])
    distance = np.linalg.norm(means[:, None] - means[None], axis=-1)
    same = parents[:100, None] == parents[None, :100]
    off_diagonal = ~np.eye(100, dtype=bool)
    assert distance[same & off_diagonal].mean() < 0.7 * distance[~same].mean()


def test_the_same_seed_gives_the_same_file_and_another_seed_another():
    first, again, other = (generate(classes=30, dim=8, train=300, test=60, seed=s) for s in (5, 5, 6))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["train_features"], other["train_features"])


def test_the_command_writes_a_plain_labelled_file(tmp_path):
    out = tmp_path / "syn.npz"
    result = subprocess.run([sys.executable, "-m", "study.synthetic", "--classes", "10000", "--dim", "16",
                             "--train", "20000", "--test", "2000", "--out", str(out)], capture_output=True, text=True,
                            cwd=PROJECT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: SYNTHETIC data from python -m study.synthetic: 10000 classes")
    with np.load(out, allow_pickle=False) as arrays:  # plain arrays: no pickle needed to read any of them
        assert set(arrays.files) == {"train_features", "train_labels", "test_features", "test_labels",
                                     "class_names", "parents", "synthetic"}
        assert arrays["train_features"].shape == (20000, 16) and arrays["train_features"].dtype == np.float32
        assert arrays["test_labels"].dtype == np.int64 and arrays["test_labels"].max() < 10000
        assert len(np.unique(arrays["train_labels"])) == 10000
        assert arrays["class_names"][42] == "class_00042" and "SYNTHETIC" in str(arrays["synthetic"])
    again = subprocess.run([sys.executable, "-m", "study.synthetic", "--classes", "10", "--out", str(out)],
                           capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().endswith("already exists; choose another name or delete it")


def test_the_command_takes_its_defaults_from_generate():
    """One place holds each default: the command line's are generate()'s."""
    import inspect

    args = build_parser().parse_args(["--classes", "10", "--out", "x.npz"])
    defaults = inspect.signature(generate).parameters
    for name in ("dim", "branching", "zipf", "noise", "shrink", "seed"):
        assert getattr(args, name) == defaults[name].default, name
    assert generate(classes=10, seed=0)["train_features"].shape == (500, 64)  # 50 per class, d = 64
