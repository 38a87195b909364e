"""The `features:FILE.npz` data source: feature vectors of one's own (e.g. a model's embeddings), for a heads-only
study at any number of classes. `python -m study.synthetic` writes files of this format.

Keys (plain arrays; an object array is refused, never unpickled):
    train_features  float [N, d]     train_labels  int [N], classes 0 .. K-1
    test_features   float [M, d]     test_labels   int [M]
    class_names     str [K]          optional; K is its length, else the largest label + 1
    parents         int [nodes]      optional hierarchy: nodes 0 .. K-1 are the classes, K .. the groups; each
                                     node's parent id, -1 for a top node (study/sources/dataset.py)
Every fault is one line naming the file, the key and what was expected.
"""
import hashlib
import zipfile
from pathlib import Path

import numpy as np

from study.errors import ConfigError, DataError
from study.files import UnsafeOrDamagedFile, load_arrays
from study.sources import register_source
from study.sources.dataset import Dataset, check_hierarchy

REQUIRED = ("train_features", "train_labels", "test_features", "test_labels")
OPTIONAL = ("class_names", "parents")
HASH_CHUNK = 1 << 20  # bytes read at a time for the file's SHA-256


@register_source("features", inputs="features", argument="FILE.npz")
def features(argument: str = "", data_dir=None, allow_download: bool = True, image_size: int = 32,
             skip_bad_images: bool = False) -> Dataset:
    """A features file, checked whole before anything uses it (it holds no images: image_size and skip_bad_images
    do not apply, and study/tune.py refuses --image-size and --skip-bad-images with it)."""
    if not argument:
        raise ConfigError("data source 'features' needs a file: features:FILE.npz (see README, Data)")
    return load_features(Path(argument).expanduser())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_file(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"features file {path} does not exist; pass features:FILE.npz with an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
        missing = [key for key in REQUIRED if key not in keys]
        if missing:
            raise DataError(f"{path} lacks key(s) {', '.join(missing)}; a features file holds "
                            f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
        return load_arrays(path, [key for key in REQUIRED + OPTIONAL if key in keys])
    except UnsafeOrDamagedFile as error:
        raise DataError(str(error)) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:  # not an .npz, truncated, damaged
        raise DataError(f"cannot read {path} as an .npz file ({type(error).__name__}: {error})") from None


def check_features(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise DataError(f"{path}: '{key}' is {array.dtype} with shape {array.shape}; expected numbers with shape "
                        "(N, d)")
    if len(array) == 0 or array.shape[1] == 0:
        raise DataError(f"{path}: '{key}' has shape {array.shape}; it needs at least one row and one column")
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: '{key}' holds a non-finite value ({array[row, col]}) at row {row}, column {col}; "
                        "every feature must be a finite number")
    return array.astype(np.float32, copy=False)


def check_labels(path: Path, key: str, labels: np.ndarray, rows: int) -> np.ndarray:
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: '{key}' is {labels.dtype} with shape {labels.shape}; expected integers with "
                        "shape (N,)")
    if len(labels) != rows:
        raise DataError(f"{path}: '{key}' has {len(labels)} entries for {rows} feature rows")
    if labels.min() < 0:
        raise DataError(f"{path}: '{key}' holds the label {labels.min()}; labels are class ids 0 .. K-1")
    return labels.astype(np.int64, copy=False)


def load_features(path: Path) -> Dataset:
    arrays = read_file(path)
    train_x = check_features(path, "train_features", arrays["train_features"])
    test_x = check_features(path, "test_features", arrays["test_features"])
    if train_x.shape[1] != test_x.shape[1]:
        raise DataError(f"{path}: train_features are {train_x.shape[1]} wide but test_features "
                        f"{test_x.shape[1]}; both need the same width d")
    train_y = check_labels(path, "train_labels", arrays["train_labels"], len(train_x))
    test_y = check_labels(path, "test_labels", arrays["test_labels"], len(test_x))
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{path}: 'class_names' is {names.dtype} with shape {names.shape}; expected strings "
                            "with shape (K,)")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    else:
        names = tuple(f"class_{k}" for k in range(int(train_y.max()) + 1))
    num_classes = len(names)
    for key, labels in (("train_labels", train_y), ("test_labels", test_y)):
        if labels.max() >= num_classes:
            raise DataError(f"{path}: '{key}' holds the label {labels.max()}, but 'class_names' names "
                            f"{num_classes} classes (0 .. {num_classes - 1})")
    if num_classes < 2:
        raise DataError(f"{path} has {num_classes} class; a classifier needs at least 2")
    unseen = np.setdiff1d(test_y, train_y)
    if unseen.size:
        raise DataError(f"{path}: test class {unseen[0]} ({names[unseen[0]]}) has no training example"
                        f"{'' if unseen.size == 1 else f' (nor do {unseen.size - 1} other test classes)'}; "
                        "every test class needs training examples")
    parents = check_hierarchy(arrays["parents"], num_classes, str(path)) if "parents" in arrays else None
    return Dataset(f"features:{path}", train_x, train_y, test_x, test_y, class_names=names, parents=parents,
                   checksum=file_sha256(path))
