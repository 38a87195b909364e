"""Files written whole or not at all, and read back as data only: nothing the study loads can run code."""
import os
import pickle
import re
from pathlib import Path

CACHE_HOME = Path.home() / ".cache" / "softmax-study"  # the data's default folder and the caches' default root


class UnsafeOrDamagedFile(ValueError):
    """A file that does not read back as plain data: damaged, made by other code, or planted to run code."""


def write_atomic(path: Path, save) -> None:
    """save(temporary path), then rename over `path`: a killed run never leaves a half-written file under it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save(temporary)
        os.replace(temporary, path)
    except OSError as error:
        if error.filename is not None:
            raise
        # A write through a file object (np.savez, a CSV writer) names no file: name the one being written.
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(text))


def save_arrays(path: Path, compressed: bool = False, **arrays) -> None:
    """An .npz of plain arrays at exactly `path` (write_atomic hands a temporary name to this)."""
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary name
        (np.savez_compressed if compressed else np.savez)(f, **arrays)


def load_tensors(path: Path):
    """A torch file read weights-only: tensors, numbers, strings and containers of them. Any other object in the
    file (a class, a function, a __reduce__ that calls something) is refused before it is built, so a planted file
    cannot run code; the refusal is UnsafeOrDamagedFile, handled like any damaged file."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's weights-only unpickler refused an object
        # torch's message is long and suggests loading the file unsafely; keep only what it refused.
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f"it refers to {refused.group(1)}" if refused else "not a weights-only torch file"
        raise UnsafeOrDamagedFile(f"{path} holds something other than tensors and plain values ({what}), which is "
                                  "never loaded") from None


def load_arrays(path: Path, keys=None) -> dict:
    """{key: array} of an .npz file (every key, or `keys`), read without pickles: an object array (whose loading
    would unpickle, and so could run code) is refused with UnsafeOrDamagedFile naming the file and the key; a
    missing key is a KeyError."""
    import numpy as np

    with np.load(path, allow_pickle=False) as arrays:
        loaded = {}
        for key in arrays.files if keys is None else keys:
            if key not in arrays.files:
                raise KeyError(f"{path} has no array '{key}'")
            try:
                loaded[key] = arrays[key]
            except ValueError as error:
                if "allow_pickle" not in str(error):
                    raise
                raise UnsafeOrDamagedFile(f"{path}: array '{key}' holds Python objects (a pickle), which are "
                                          "never loaded") from None
        return loaded
