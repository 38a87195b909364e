"""`python -m study.synthetic`: a SYNTHETIC many-class features file, for demonstrations and tests.

    python -m study.synthetic --classes 10000 --dim 64 --out synthetic-10k.npz

Class means come from a random hierarchy, so trees can matter: the classes are split into `--branching`
contiguous groups, each group again, down to single classes; every node's mean is its parent's plus a Gaussian
offset whose scale shrinks by `--shrink` per level, and a class's examples are its mean plus isotropic Gaussian
noise (`--noise` per coordinate). Offsets are drawn with variance scale^2 / dim per coordinate, so distances
between means, and against them the noise along any direction, do not grow with the width. Class frequencies
follow a Zipf law (class k, 0-based, has weight 1 / (k + 1)^zipf), so frequency-based layouts and adaptive softmax
can matter; every class has at least one training example. Test examples follow the same class frequencies as
training. With the defaults (d = 64, noise 0.3, 50 training and 10 test examples per class) at K = 100, a
nearest-class-mean classifier gets about 55 % of the test examples right (54-57 % for seeds 0, 1 and 2), and
90-94 % of its answers fall in the true class's group.

The file holds `train_features` float32 [N, dim], `train_labels` int64 [N], `test_features`, `test_labels`,
`class_names` (class_00000 ...), `parents` int64 [M] (the hierarchy: nodes 0 .. K-1 are the classes, K .. M-1 the
groups; each node's parent id, -1 for the root) and `synthetic`, a sentence saying what made it. Everything is
plain arrays (no pickles); the file is written whole or not at all.
"""
import argparse
from pathlib import Path
from typing import Optional

import numpy as np

from study import cli
from study.errors import StudyError, is_write_error
from study.files import save_arrays, write_atomic

# The defaults, one place for generate() and the command line.
DIM = 64  # feature width d
BRANCHING = 10  # children per group of the hierarchy
ZIPF = 1.0  # exponent of the class frequencies
NOISE = 0.3  # standard deviation of an example around its class mean, per coordinate
SHRINK = 0.6  # each level's offset scale relative to its parent level's
TRAIN_PER_CLASS, TEST_PER_CLASS = 50, 10  # examples per class when --train / --test are not given


def build_parser():
    p = cli.ArgumentParser(prog="python -m study.synthetic", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=cli.whole(2), required=True, help="number of classes K (>= 2)")
    p.add_argument("--dim", type=cli.whole(1), default=DIM, help=f"feature width d (default {DIM})")
    p.add_argument("--out", required=True, help="the .npz file to write (refused if it exists)")
    p.add_argument("--train", type=cli.whole(1), default=None,
                   help=f"training examples (default {TRAIN_PER_CLASS} x K; at least K, so every class has one)")
    p.add_argument("--test", type=cli.whole(1), default=None, help=f"test examples (default {TEST_PER_CLASS} x K)")
    p.add_argument("--branching", type=cli.whole(2), default=BRANCHING,
                   help=f"children per group of the hierarchy (default {BRANCHING})")
    p.add_argument("--zipf", type=cli.number(0), default=ZIPF,
                   help=f"Zipf exponent of the class frequencies (0: equal; default {ZIPF:g})")
    p.add_argument("--noise", type=cli.number(0, above=True), default=NOISE,
                   help=f"standard deviation of an example around its class mean, per coordinate (default {NOISE:g})")
    p.add_argument("--shrink", type=cli.number(0, above=True), default=SHRINK,
                   help=f"each level's offsets are this times its parent level's (first level: 1; default {SHRINK:g})")
    p.add_argument("--seed", type=cli.whole(0, 2 ** 32 - 1), default=0)
    return p


def hierarchy(num_classes: int, branching: int) -> tuple:
    """(parents, depth): the classes split into `branching` contiguous groups, recursively, down to single classes.
    parents[i] is node i's parent (-1: the root); nodes 0 .. K-1 are the classes, the groups follow. depth[i] is
    node i's distance from the root."""
    parents, depth = [-1] * num_classes, [0] * num_classes
    root = num_classes
    parents.append(-1)
    depth.append(0)

    def split(first: int, last: int, node: int) -> None:  # classes [first, last) under `node`
        size = last - first
        parts = min(branching, size)
        bounds = [first + size * i // parts for i in range(parts + 1)]  # parts groups of near-equal size
        for low, high in zip(bounds, bounds[1:]):
            if high - low == 1:
                parents[low], depth[low] = node, depth[node] + 1
            else:
                group = len(parents)
                parents.append(node)
                depth.append(depth[node] + 1)
                split(low, high, group)

    split(0, num_classes, root)
    return np.array(parents, np.int64), np.array(depth, np.int64)


def class_means(parents, depth, dim: int, shrink: float, rng) -> np.ndarray:
    """[M, dim]: the root at 0, every other node its parent's mean plus N(0, (shrink^(level-1))^2 / dim) offsets."""
    means = np.zeros((len(parents), dim))
    for node in np.argsort(depth, kind="stable"):  # parents before children
        if parents[node] >= 0:
            scale = shrink ** (depth[node] - 1) / np.sqrt(dim)
            means[node] = means[parents[node]] + rng.normal(0.0, scale, dim)
    return means


def sample_labels(count: int, weights: np.ndarray, rng, every_class: bool) -> np.ndarray:
    labels = rng.choice(len(weights), size=count, p=weights / weights.sum())
    if every_class:  # one example of each class first, then the Zipf draw: no class is absent from training
        labels[:len(weights)] = np.arange(len(weights))
    return rng.permutation(labels)


def generate(classes: int, dim: int = DIM, train: Optional[int] = None, test: Optional[int] = None,
             branching: int = BRANCHING, zipf: float = ZIPF, noise: float = NOISE, shrink: float = SHRINK,
             seed: int = 0) -> dict:
    """The arrays of a synthetic features file (see the module's docstring); train and test default to
    TRAIN_PER_CLASS and TEST_PER_CLASS examples per class."""
    train = train if train is not None else TRAIN_PER_CLASS * classes
    test = test if test is not None else TEST_PER_CLASS * classes
    if train < classes:
        raise StudyError(f"--train {train} is fewer than the {classes} classes; every class needs a training "
                         f"example: choose at least {classes}")
    rng = np.random.default_rng(seed)
    parents, depth = hierarchy(classes, branching)
    means = class_means(parents, depth, dim, shrink, rng)[:classes]
    weights = 1.0 / np.arange(1, classes + 1) ** zipf
    arrays = {}
    for split, count in (("train", train), ("test", test)):
        labels = sample_labels(count, weights, rng, every_class=split == "train")
        features = means[labels] + rng.normal(0.0, noise, (count, dim))
        arrays[f"{split}_features"], arrays[f"{split}_labels"] = features.astype(np.float32), labels.astype(np.int64)
    arrays["class_names"] = np.array([f"class_{k:05d}" for k in range(classes)])
    arrays["parents"] = parents
    arrays["synthetic"] = np.array(
        f"SYNTHETIC data from python -m study.synthetic: {classes} classes, dim {dim}, {train} train / {test} test "
        f"examples, hierarchy branching {branching}, Zipf exponent {zipf:g}, noise {noise:g}, shrink {shrink:g}, "
        f"seed {seed}")
    return arrays


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise StudyError(f"--out {out} must end in .npz")
    if out.exists():
        raise StudyError(f"--out {out} already exists; choose another name or delete it")
    if not out.parent.is_dir():
        raise StudyError(f"--out {out}: folder {out.parent} does not exist")
    arrays = generate(args.classes, args.dim, args.train, args.test, args.branching, args.zipf, args.noise,
                      args.shrink, args.seed)
    try:
        write_atomic(out, lambda path: save_arrays(path, compressed=True, **arrays))
    except OSError as error:  # a full disk, a folder it may not write: nothing is left under --out
        if not is_write_error(error):
            raise
        raise StudyError(f"cannot write {out}: {error.strerror}; nothing was written") from None
    print(f"wrote {out}: {arrays['synthetic'].item()}")


if __name__ == "__main__":
    cli.run(main)
