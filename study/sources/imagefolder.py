"""The `imagefolder:DIR` data source: images of one's own in torchvision's ImageFolder layout, any K, no hierarchy.

    DIR/train/<class>/<image>     the training images; the class names are the folder names, sorted (as
                                  torchvision's ImageFolder numbers them), images in sorted path order, sub-folders
                                  of a class folder included
    DIR/test/<class>/<image>      optional; every test class must also be a training class. Without test/,
                                  TEST_SHARE of each class's images (seeded by TEST_SPLIT_SEED, at least one image
                                  of each class kept for training) is the test set, and the console says so.

Every image is decoded by Pillow, converted to RGB as torchvision's loader does (alpha dropped; the console counts
greyscale, palette and alpha images converted), and resized once: the shorter side to `image_size` pixels
(bilinear, antialiased), then the centre square cropped; a JPEG at least twice that size is decoded at a reduced
scale first (Pillow's draft mode, never below `image_size`). Names starting with '.' (.DS_Store, ...) are left out and
counted on the console; any other file that does not decode is refused, naming it (below).

The decoded uint8 arrays are cached in <cache root>/imagefolder/<fingerprint>.npz (the root of study/frozen.py:
$SOFTMAX_STUDY_CACHE, else ~/.cache/softmax-study/frozen). The fingerprint is a SHA-256 over every image file's path
relative to DIR, size in bytes and modification time in nanoseconds, plus image_size and CACHE_FORMAT: a second
study of the same folder decodes nothing, and a file added, removed, rewritten or touched since makes a new entry
(the file bytes are not hashed: reading every byte again would cost much of what the cache saves). The cache is read
without pickles; an entry that does not load, or does not fit the folder, is decoded again with one line saying so.

A file that does not decode is refused in one line naming it; with `skip_bad_images` (--skip-bad-images) such files
are left out instead, counted on the console and in the dataset's `skipped` (study.json: `skipped_images`), and the
cache entry records which (a later study without the flag refuses the first of them, as if it decoded it again).

Channel statistics are the training images' own mean and standard deviation (after resizing), not CIFAR-100's.
"""
import hashlib
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from study.errors import ConfigError, DataError
from study.files import UnsafeOrDamagedFile, load_arrays, save_arrays, write_atomic
from study.sources import register_source
from study.sources.dataset import Dataset

TEST_SHARE = 0.2  # of each class's images held out as the test set when DIR has no test/ folder
TEST_SPLIT_SEED = 0  # fixes that held-out set: the same for every study of the folder
DEFAULT_IMAGE_SIZE = 32  # pixels per side (CIFAR-100's, what the presets' backbones were sized for)
# ResNet-12 halves an image four times (16 -> 1 pixel; tinyvgg twice); above 512 a study's images would not fit in
# memory at any useful number of them.
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 512
CACHE_FORMAT = 1  # bump when what a cache entry holds, or how images are decoded, changes
CACHE_FOLDER = "imagefolder"
CONVERSIONS = ("greyscale", "palette", "alpha", "other")  # what was converted to RGB, as the console counts it
STATS_CHUNK = 4096  # images per step of the channel statistics (float64 of a chunk only, not of every image)


@register_source("imagefolder", argument="DIR")
def imagefolder(argument: str = "", data_dir=None, allow_download: bool = True,
                image_size: int = DEFAULT_IMAGE_SIZE, skip_bad_images: bool = False) -> Dataset:
    """DIR/train/<class>/<image> (and optionally DIR/test/...), decoded once and cached."""
    if not argument:
        raise ConfigError("data source 'imagefolder' needs a folder: imagefolder:DIR, with DIR/train/<class>/<image> "
                          "(see README, Data)")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_size={image_size} must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}")
    return load_imagefolder(Path(argument).expanduser(), image_size, skip_bad_images)


def load_imagefolder(folder: Path, image_size: int = DEFAULT_IMAGE_SIZE, skip_bad_images: bool = False,
                     log=print) -> Dataset:
    train_files, test_files, class_names, hidden = scan(folder)
    if hidden:
        log(f"imagefolder {folder}: {hidden} hidden file(s) (names starting with '.') left out")
    files = [path for per_class in train_files for path in per_class]
    files += [path for per_class in (test_files or []) for path in per_class]
    images, converted, skipped = cached_images(folder, files, image_size, skip_bad_images, log)
    kept = np.setdiff1d(np.arange(len(files)), skipped)
    in_train = kept < sum(len(paths) for paths in train_files)
    labels = np.concatenate([labels_of(train_files), labels_of(test_files or [])])[kept]
    if skipped.size:
        log(f"imagefolder {folder}: left out {skipped.size:,} file(s) that do not decode (--skip-bad-images), the "
            f"first {files[skipped[0]]}")
        empty = np.setdiff1d(np.arange(len(class_names)), labels[in_train])
        if empty.size:
            raise DataError(f"imagefolder class folder {folder / 'train' / class_names[empty[0]]} holds no image "
                            "that decodes; every class needs at least one training image")
    if test_files is None:
        train_x, test_x, train_y, test_y = held_out(images, labels)
        log(f"imagefolder {folder}: no test/ folder; {TEST_SHARE:.0%} of each class's images (rounded, at least one "
            f"kept for training; seed {TEST_SPLIT_SEED}) are the test set: {len(test_y):,} of {len(images):,}")
    else:
        train_x, test_x, train_y, test_y = images[in_train], images[~in_train], labels[in_train], labels[~in_train]
    counts = ", ".join(f"{n:,} {kind}" for kind, n in zip(CONVERSIONS, converted) if n) or "none"
    log(f"imagefolder {folder}: {len(class_names):,} classes, {len(train_y):,} training and {len(test_y):,} test "
        f"images at {image_size} x {image_size}; converted to RGB: {counts}")
    mean, std = channel_stats(train_x)
    return Dataset(f"imagefolder:{folder}", train_x, train_y, test_x, test_y, class_names=tuple(class_names),
                   channel_mean=mean, channel_std=std,
                   skipped=tuple(files[i].relative_to(folder).as_posix() for i in skipped))


def scan(folder: Path):
    """([per training class, its image paths], the same for test/ or None, class names, hidden files left out);
    every fault of the layout is one DataError naming the folder."""
    if not folder.is_dir():
        raise DataError(f"imagefolder {folder} does not exist or is not a folder; pass imagefolder:DIR with "
                        "DIR/train/<class>/<image>")
    hidden = [0]
    train_classes, train_files = class_folders(folder / "train", hidden)
    if len(train_classes) < 2:
        only = f" ({train_classes[0]})" if train_classes else ""
        raise DataError(f"imagefolder {folder / 'train'} has {len(train_classes)} class folder{only}; a classifier "
                        "needs at least 2 (DIR/train/<class>/<image>)")
    test_files = None
    if (folder / "test").exists():
        test_classes, per_class = class_folders(folder / "test", hidden)
        index = {name: k for k, name in enumerate(train_classes)}
        unknown = [name for name in test_classes if name not in index]
        if unknown:
            raise DataError(f"imagefolder {folder / 'test' / unknown[0]} is a test class with no training folder "
                            f"{folder / 'train' / unknown[0]}; every test class must also be a training class")
        test_files = [[] for _ in train_classes]
        for name, paths in zip(test_classes, per_class):
            test_files[index[name]] = paths
    return train_files, test_files, train_classes, hidden[0]


def class_folders(split: Path, hidden: List[int]) -> Tuple[List[str], List[List[Path]]]:
    """(class names sorted, [per class, its image files in sorted order]) of DIR/train or DIR/test."""
    if not split.is_dir():
        raise DataError(f"imagefolder {split.parent} has no {split.name}/ folder of class folders; expected "
                        f"{split}/<class>/<image>")
    entries = sorted(split.iterdir())
    stray = [p for p in entries if not p.is_dir() and not p.name.startswith(".")]
    if stray:
        raise DataError(f"imagefolder {stray[0]} is not inside a class folder; put every image in "
                        f"{split}/<class>/")
    hidden[0] += sum(1 for p in entries if not p.is_dir())
    classes = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    if not classes:
        raise DataError(f"imagefolder {split} holds no class folders; expected {split}/<class>/<image>")
    files = []
    for class_dir in classes:
        paths = sorted(p for p in class_dir.rglob("*") if p.is_file())
        shown = [p for p in paths if not any(part.startswith(".") for part in p.relative_to(class_dir).parts)]
        hidden[0] += len(paths) - len(shown)
        if not shown:
            raise DataError(f"imagefolder class folder {class_dir} holds no image; every class folder needs at "
                            "least one (remove the folder to drop the class)")
        files.append(shown)
    return [p.name for p in classes], files


def labels_of(per_class: List[List[Path]]) -> np.ndarray:
    return np.concatenate([np.full(len(paths), k, dtype=np.int64) for k, paths in enumerate(per_class)]
                          + [np.zeros(0, dtype=np.int64)])


def held_out(images: np.ndarray, labels: np.ndarray):
    """(train images, test images, train labels, test labels): round(TEST_SHARE x n) of each class's n images to
    test, at most n - 1 of them, chosen by a generator seeded with TEST_SPLIT_SEED."""
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    test = []
    for k in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == k)
        count = min(round(TEST_SHARE * len(members)), len(members) - 1)
        test.append(rng.permutation(members)[:count])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return images[train], images[test], labels[train], labels[test]


def fingerprint(folder: Path, files: List[Path], image_size: int) -> str:
    """SHA-256 of every file's relative path, size and modification time (ns), the resolution and CACHE_FORMAT."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0{image_size}\0".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def cache_path(key: str) -> Path:
    from study.frozen import cache_root  # the frozen cache's root; imported here, as it imports torch

    return cache_root() / CACHE_FOLDER / f"{key[:32]}.npz"


def cached_images(folder: Path, files: List[Path], image_size: int, skip_bad_images: bool, log):
    """(uint8 [N, 3, S, S] images of the files that decode, in order; [len(CONVERSIONS)] counts of images converted
    to RGB; int64 indices into `files` of those left out, which only skip_bad_images allows): from the cache when it
    holds them, else decoded and cached."""
    key = fingerprint(folder, files, image_size)
    path = cache_path(key)
    if path.is_file():
        try:
            arrays = load_arrays(path, ("images", "converted", "skipped", "key"))
            images, skipped = arrays["images"], arrays["skipped"]
            fits = (str(arrays["key"]) == key and images.dtype == np.uint8 and skipped.dtype == np.int64
                    and skipped.ndim == 1 and np.all((skipped >= 0) & (skipped < len(files)))
                    and images.shape == (len(files) - len(np.unique(skipped)), 3, image_size, image_size)
                    and arrays["converted"].shape == (len(CONVERSIONS),))
            if not fits:
                raise ValueError("it does not fit this folder")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnsafeOrDamagedFile) as error:
            log(f"imagefolder: cache {path} is unreadable ({type(error).__name__}: {error}); decoding again")
        else:
            if skipped.size and not skip_bad_images:  # left out by an earlier study that skipped bad images
                raise DataError(f"imagefolder: cannot read {files[skipped[0]]} as an image (it did not decode when "
                                "this folder was cached); remove or replace it, or pass --skip-bad-images")
            log(f"imagefolder {folder}: reusing the decoded images cached in {path}")
            return images, arrays["converted"], skipped
    started = time.time()
    images, converted, skipped = decode_all(files, image_size, skip_bad_images)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda p: save_arrays(p, images=images, converted=converted, skipped=skipped,
                                                 key=np.array(key)))
        where = f"cached in {path}"
    except OSError as error:  # a study can go on without the cache: it decodes again next time
        where = f"not cached ({path}: {error.strerror}; set $SOFTMAX_STUDY_CACHE to a writable folder)"
    log(f"imagefolder {folder}: decoded {len(images):,} images in {time.time() - started:.1f} s, {where}")
    return images, converted, skipped


def decode_all(files: List[Path], image_size: int, skip_bad_images: bool = False):
    """(images of the files that decode, conversion counts, indices of those that do not); without
    skip_bad_images the first file that does not decode is a DataError."""
    images = np.empty((len(files), 3, image_size, image_size), dtype=np.uint8)
    converted: Dict[str, int] = dict.fromkeys(CONVERSIONS, 0)
    skipped = []
    for i, path in enumerate(files):
        try:
            images[i], kind = decode_image(path, image_size)
        except DataError:
            if not skip_bad_images:
                raise
            skipped.append(i)
            continue
        if kind:
            converted[kind] += 1
    skipped = np.array(skipped, dtype=np.int64)
    if skipped.size:
        images = np.delete(images, skipped, axis=0)
    return images, np.array([converted[kind] for kind in CONVERSIONS], dtype=np.int64), skipped


def decode_image(path: Path, image_size: int) -> Tuple[np.ndarray, Optional[str]]:
    """(uint8 [3, S, S] of the image at `path`, what it was converted from: one of CONVERSIONS, or None for RGB);
    a file Pillow cannot decode is one DataError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            kind = conversion(image)
            image.draft("RGB", (image_size, image_size))  # a JPEG decodes at a reduced scale, no smaller than S
            image.load()
            if image.mode == "P" and "transparency" in image.info:
                image = image.convert("RGBA")  # Pillow's own advice for palette transparency; alpha dropped next
            rgb = resized(image.convert("RGB"), image_size)
    except Exception as error:  # Pillow raises many kinds for a damaged or foreign file: all mean the same
        raise DataError(f"imagefolder: cannot read {path} as an image ({type(error).__name__}: {error}); remove or "
                        "replace it") from None
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1), kind


def conversion(image) -> Optional[str]:
    mode = image.mode
    if mode == "RGB":
        return None
    if "A" in mode or "a" in mode or "transparency" in image.info:
        return "alpha"
    if mode == "P":
        return "palette"
    if len(image.getbands()) == 1:
        return "greyscale"
    return "other"  # CMYK, YCbCr, LAB, HSV


def resized(image, size: int):
    """The shorter side to `size` pixels (bilinear, antialiased by Pillow), then the centre size x size square."""
    from PIL import Image

    width, height = image.size
    if (width, height) == (size, size):
        return image
    scale = size / min(width, height)
    new = (max(size, round(width * scale)), max(size, round(height * scale)))
    image = image.resize(new, Image.BILINEAR)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def channel_stats(images: np.ndarray) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 [N, C, H, W] images on a 0..1 scale."""
    total = np.zeros(images.shape[1])
    squares = np.zeros(images.shape[1])
    for start in range(0, len(images), STATS_CHUNK):
        chunk = images[start: start + STATS_CHUNK].astype(np.float64) / 255
        total += chunk.sum(axis=(0, 2, 3))
        squares += (chunk ** 2).sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0))
    return tuple(float(m) for m in mean), tuple(float(max(s, 1e-6)) for s in std)
