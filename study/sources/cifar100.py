"""The `cifar100` data source: CIFAR-100 from disk in torchvision's `cifar-100-python` layout, validated by
structure. Its 20 superclasses are the dataset's hierarchy (100 classes under 20 groups).

Where to look: `data_dir`, else $SOFTMAX_STUDY_DATA, else ~/.cache/softmax-study. Either the folder that holds
`cifar-100-python/` or that folder itself. Missing files are downloaded (official tar.gz, md5-checked) when the
network allows; otherwise one error says where to put them.

The pickles are the dataset's own format (trusted input, as torchvision's loader treats them), yet they are read by
a restricted unpickler that builds numpy arrays and plain Python values only: a file that names any other class or
function is refused in one line, before anything in it runs.
"""
import os
import pickle
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from study.errors import ConfigError, DataError
from study.files import CACHE_HOME
from study.sources import register_source
from study.sources.dataset import Dataset

ENV_VAR = "SOFTMAX_STUDY_DATA"
DEFAULT_ROOT = CACHE_HOME
FOLDER = "cifar-100-python"
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
TGZ_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"  # of the official archive; extracted files are checked by structure
NUM_FINE, NUM_COARSE, IMAGE_SHAPE = 100, 20, (3, 32, 32)
# The training set's channel statistics (of the 50k training images, scaled to [0, 1]).
CHANNEL_MEAN = (0.50708, 0.48655, 0.44092)
CHANNEL_STD = (0.26733, 0.25644, 0.27615)


def resolve_root(data_dir: Optional[str] = None) -> Tuple[Path, bool]:
    """(folder to search, whether the user named it explicitly)."""
    if data_dir:
        return Path(data_dir).expanduser(), True
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), True
    return DEFAULT_ROOT, False


FILES = ("train", "test", "meta")


def find_folder(root: Path) -> Optional[Path]:
    """The folder holding all of FILES (root/cifar-100-python, or root itself), else None. A folder holding only
    some of them is refused, naming what is missing: downloading over a user's own partial copy would hide it."""
    for candidate in (root / FOLDER, root):
        present = [name for name in FILES if (candidate / name).is_file()]
        if len(present) == len(FILES):
            return candidate
        if present:
            missing = [name for name in FILES if name not in present]
            raise DataError(f"CIFAR-100 in {candidate} is incomplete: missing {', '.join(missing)} (found "
                            f"{', '.join(present)}); put the missing file(s) there, or pass --data-dir with a "
                            "complete copy")
    return None


def download(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive  # only needed here

    try:
        download_and_extract_archive(URL, download_root=str(root), md5=TGZ_MD5)
    except Exception as error:  # any network/IO/checksum failure ends in the same advice
        raise DataError(
            f"CIFAR-100 is not in {root} and downloading it failed ({type(error).__name__}: {error}); "
            f"put {FOLDER}/{{train,test,meta}} there, or pass --data-dir, or set ${ENV_VAR}"
        ) from None


# The only globals a CIFAR-100 pickle refers to: numpy's array reconstruction (numpy 1 and 2 module names; the
# official files were written by Python 2's cPickle with numpy 1). Dicts, lists, strings and numbers need none.
CIFAR_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                 ("numpy", "ndarray"), ("numpy", "dtype")}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle that names a class or function a CIFAR-100 file never holds."""


class CifarUnpickler(pickle.Unpickler):
    """pickle.Unpickler that builds only what CIFAR_GLOBALS names: a planted class or function is refused."""

    def find_class(self, module, name):
        if (module, name) not in CIFAR_GLOBALS:
            raise RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = CifarUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as error:
        raise DataError(f"{path} is refused: it refers to {error}, which a CIFAR-100 file never holds (nothing in it "
                        "was run); replace it with the official file") from None
    except Exception as error:  # truncated, corrupt or not a pickle at all
        raise DataError(f"cannot read {path}: {type(error).__name__}: {error}; the file is truncated or corrupt"
                        ) from None
    if not isinstance(content, dict):
        raise DataError(f"{path} holds a {type(content).__name__}, expected the CIFAR-100 dict")
    return content


def check_split(path: Path, batch: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [k for k in ("data", "fine_labels", "coarse_labels") if k not in batch]
    if missing:
        raise DataError(f"{path} lacks key(s) {', '.join(missing)}; expected data, fine_labels, coarse_labels")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{path}: 'data' is {dtype} with shape {shape}; expected uint8 with shape (N, 3072)")
    fine = np.asarray(batch["fine_labels"], dtype=np.int64)
    coarse = np.asarray(batch["coarse_labels"], dtype=np.int64)
    for name, labels, count in (("fine_labels", fine, NUM_FINE), ("coarse_labels", coarse, NUM_COARSE)):
        if labels.shape != (len(data),):
            raise DataError(f"{path}: {name} has {labels.size} entries for {len(data)} images")
        if labels.size and (labels.min() < 0 or labels.max() >= count):
            raise DataError(f"{path}: {name} span {labels.min()}..{labels.max()}; expected 0..{count - 1}")
    per_class = np.bincount(fine, minlength=NUM_FINE)
    if per_class.min() != per_class.max() or per_class.min() == 0:
        raise DataError(f"{path}: images per fine class range {per_class.min()}..{per_class.max()}; "
                        f"CIFAR-100 has the same number for every class (500 train, 100 test)")
    return data.reshape(-1, *IMAGE_SHAPE), fine, coarse


def coarse_map(path: Path, fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    mapping = np.full(NUM_FINE, -1, dtype=np.int64)
    mapping[fine] = coarse
    if not np.array_equal(mapping[fine], coarse):
        raise DataError(f"{path}: a fine class appears under two superclasses; coarse_labels are inconsistent")
    return mapping


@register_source("cifar100")
def cifar100(argument: str = "", data_dir: Optional[str] = None, allow_download: bool = True,
             image_size: int = 32, skip_bad_images: bool = False) -> Dataset:
    """CIFAR-100 from --data-dir, else $SOFTMAX_STUDY_DATA, else ~/.cache/softmax-study (downloaded there when
    missing and the network allows)."""
    if image_size != IMAGE_SHAPE[1]:
        raise ConfigError(f"--image-size {image_size} does not apply to data source 'cifar100', whose images are "
                          f"{IMAGE_SHAPE[1]} x {IMAGE_SHAPE[2]}; drop it (it resizes imagefolder:DIR's images)")
    if skip_bad_images:
        raise ConfigError("--skip-bad-images does not apply to data source 'cifar100', whose files are checked whole; "
                          "drop it (it leaves out imagefolder:DIR's damaged images)")
    if argument:
        raise ConfigError(f"data source 'cifar100' takes no argument, got 'cifar100:{argument}'; its folder is "
                          f"given by --data-dir or ${ENV_VAR}")
    return load_cifar100(data_dir, allow_download)


def load_cifar100(data_dir: Optional[str] = None, allow_download: bool = True) -> Dataset:
    root, explicit = resolve_root(data_dir)
    if explicit and not root.is_dir():
        raise DataError(f"data directory {root} does not exist; pass an existing folder holding {FOLDER}/")
    folder = find_folder(root)
    if folder is None:
        if not allow_download:
            raise DataError(f"CIFAR-100 not found in {root}: expected {FOLDER}/{{train,test,meta}} there")
        root.mkdir(parents=True, exist_ok=True)
        download(root)
        folder = find_folder(root)
    train_x, train_y, train_c = check_split(folder / "train", read_pickle(folder / "train"))
    test_x, test_y, test_c = check_split(folder / "test", read_pickle(folder / "test"))
    mapping = coarse_map(folder / "train", train_y, train_c)
    if not np.array_equal(mapping[test_y], test_c):
        raise DataError(f"{folder / 'test'}: coarse_labels disagree with the train split's fine->coarse map")
    meta = read_pickle(folder / "meta")
    names = {k: tuple(meta.get(k, ())) for k in ("fine_label_names", "coarse_label_names")}
    if len(names["fine_label_names"]) != NUM_FINE or len(names["coarse_label_names"]) != NUM_COARSE:
        raise DataError(f"{folder / 'meta'}: expected 100 fine_label_names and 20 coarse_label_names")
    parents = tuple(NUM_FINE + int(c) for c in mapping) + (-1,) * NUM_COARSE  # superclass g is node 100 + g
    return Dataset("cifar100", train_x, train_y, test_x, test_y, class_names=names["fine_label_names"],
                   parents=parents, group_names=names["coarse_label_names"], channel_mean=CHANNEL_MEAN,
                   channel_std=CHANNEL_STD)
