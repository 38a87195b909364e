"""The imagefolder:DIR source: the same pixels, labels and splits as the CIFAR-100 loader for the same images written
as PNG; the held-out test share without test/; conversion to RGB and resizing; the decoded-image cache; every bad
folder as one line through study/tune.py; and both kinds of study training on a folder."""
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

import study.tune as tune_command
from conftest import assert_one_line_error
from fake_cifar import write_fake_cifar100
from study.config import DataConfig, FrozenConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from study.errors import DataError
from study.inputs import load_splits
from study.sources import create_source
from study.sources import imagefolder
from study.sources.cifar100 import load_cifar100
from study.sources.dataset import Dataset
from study.splits import make_splits
from study.trainer import fit
from test_bad_input import listing

CLASSES = 10  # of the fake CIFAR-100's 100, named fine0 .. fine9: sorted as text, they keep their label order


def write_png(path, pixels_chw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels_chw.transpose(1, 2, 0))).save(path)


@pytest.fixture(scope="module")
def cifar_and_folder(tmp_path_factory):
    """(the fake CIFAR-100's first CLASSES classes as a Dataset, the same images as DIR/{train,test}/<class>/*.png)."""
    root = write_fake_cifar100(tmp_path_factory.mktemp("cifar"), train_per_class=6, test_per_class=2)
    cifar = load_cifar100(str(root), allow_download=False)
    folder = tmp_path_factory.mktemp("folder")
    arrays = {}
    for split, images, labels in (("train", cifar.train_inputs, cifar.train_labels),
                                  ("test", cifar.test_inputs, cifar.test_labels)):
        # The folder's order: by class, then by file name (the image's index in the pickle).
        order = np.flatnonzero(labels < CLASSES)
        order = order[np.argsort(labels[order], kind="stable")]
        for i in order:
            write_png(folder / split / cifar.class_names[labels[i]] / f"{i:05d}.png", images[i])
        arrays[split] = images[order], labels[order]
    subset = Dataset("cifar100", *arrays["train"], *arrays["test"], class_names=cifar.class_names[:CLASSES])
    return subset, folder


def test_a_folder_of_pngs_gives_the_pickles_pixels_labels_and_splits(cifar_and_folder, capsys):
    cifar, folder = cifar_and_folder
    data = create_source(f"imagefolder:{folder}")
    assert data.source == f"imagefolder:{folder}" and data.class_names == cifar.class_names
    assert data.parents is None and data.top_groups() is None and not data.holds_features
    for mine, theirs in ((data.train_inputs, cifar.train_inputs), (data.train_labels, cifar.train_labels),
                         (data.test_inputs, cifar.test_inputs), (data.test_labels, cifar.test_labels)):
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    for options in (dict(val_size=10), dict(val_size=10, subset=30, split_seed=2),
                    dict(val_size=10, final=True)):
        a, b = make_splits(data, **options), make_splits(cifar, **options)
        assert np.array_equal(a.train_images, b.train_images) and np.array_equal(a.train_labels, b.train_labels)
        assert np.array_equal(a.eval_images, b.eval_images) and np.array_equal(a.eval_labels, b.eval_labels)
    # The training images' own channel statistics, not CIFAR-100's constants.
    pixels = cifar.train_inputs.astype(np.float64) / 255
    np.testing.assert_allclose(data.channel_mean, pixels.mean(axis=(0, 2, 3)), atol=1e-9)
    np.testing.assert_allclose(data.channel_std, pixels.std(axis=(0, 2, 3)), atol=1e-9)
    out = capsys.readouterr().out
    assert f"{CLASSES} classes, 60 training and 20 test images at 32 x 32; converted to RGB: none" in out


def test_the_second_load_decodes_nothing_and_a_changed_folder_is_decoded_again(cifar_and_folder, monkeypatch,
                                                                                capsys):
    _, folder = cifar_and_folder
    first = create_source(f"imagefolder:{folder}")  # cached by the test above, or here
    decoded = []
    real = imagefolder.decode_image
    monkeypatch.setattr(imagefolder, "decode_image", lambda *args: decoded.append(args) or real(*args))
    second = create_source(f"imagefolder:{folder}")
    assert decoded == [] and "reusing the decoded images cached in" in capsys.readouterr().out
    assert np.array_equal(first.train_inputs, second.train_inputs)
    assert np.array_equal(first.test_labels, second.test_labels)
    # Another resolution is another cache entry; so is a file rewritten since (its size or time changes).
    assert create_source(f"imagefolder:{folder}", image_size=16).train_inputs.shape == (60, 3, 16, 16)
    assert len(decoded) == 80
    decoded.clear()
    image = sorted((folder / "train" / "fine3").iterdir())[0]
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    changed = create_source(f"imagefolder:{folder}")
    assert len(decoded) == 80 and not np.array_equal(changed.train_inputs, first.train_inputs)


def test_a_damaged_cache_entry_is_decoded_again(tmp_path, capsys):
    folder = tmp_path / "f"
    for name in ("a", "b"):
        write_png(folder / "train" / name / "0.png", np.full((3, 8, 8), 9, np.uint8))
    create_source(f"imagefolder:{folder}", image_size=16)
    entry = imagefolder.cache_path(imagefolder.fingerprint(folder, sorted(folder.rglob("*.png")), 16))
    entry.write_bytes(entry.read_bytes()[:40])  # truncated
    data = create_source(f"imagefolder:{folder}", image_size=16)
    out = capsys.readouterr().out
    assert "is unreadable" in out and "decoding again" in out and np.all(data.train_inputs == 9)


def test_without_test_folder_a_seeded_stratified_share_is_held_out(tmp_path, capsys):
    folder = tmp_path / "f"
    rng = np.random.default_rng(0)
    sizes = {"a": 10, "b": 5, "c": 2, "d": 1}  # 20 % of each, rounded, always one image left for training
    for name, count in sizes.items():
        for i in range(count):
            write_png(folder / "train" / name / f"{i}.png", rng.integers(0, 256, (3, 8, 8), dtype=np.uint8))
    data = create_source(f"imagefolder:{folder}", image_size=16)
    assert np.bincount(data.test_labels, minlength=4).tolist() == [2, 1, 0, 0]
    assert np.bincount(data.train_labels, minlength=4).tolist() == [8, 4, 2, 1]
    # No image is in both, every image is in one, and the share is the same on every load (seeded).
    train, test = {x.tobytes() for x in data.train_inputs}, {x.tobytes() for x in data.test_inputs}
    assert not train & test and len(train | test) == sum(sizes.values())
    assert np.array_equal(create_source(f"imagefolder:{folder}", image_size=16).test_inputs, data.test_inputs)
    assert imagefolder.TEST_SHARE == 0.2
    assert "no test/ folder; 20% of each class's images (rounded, at least one kept for training; seed 0) are the " \
           "test set: 3 of 18" in capsys.readouterr().out


def test_every_image_becomes_rgb_and_is_resized_once_and_conversions_are_counted(tmp_path, capsys):
    folder = tmp_path / "f"
    grey = Image.fromarray(np.full((20, 40), 200, np.uint8))  # L, 40 wide x 20 high
    grey.save(folder_file(folder, "a", "grey.png"))
    grey.convert("P").save(folder_file(folder, "a", "palette.png"))
    Image.fromarray(np.full((32, 32, 4), 90, np.uint8)).save(folder_file(folder, "b", "alpha.png"))  # RGBA
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(folder_file(folder, "b", "big.jpg"))
    (folder / "train" / "b" / ".DS_Store").write_bytes(b"not an image, hidden")
    data = create_source(f"imagefolder:{folder}", image_size=16)
    assert data.train_inputs.shape == (4, 3, 16, 16) and data.train_labels.tolist() == [0, 0, 1, 1]
    grey_rgb = data.train_inputs[np.flatnonzero(data.train_labels == 0)]
    assert np.all(grey_rgb == 200)  # greyscale copied to all three channels; a uniform image stays uniform
    assert np.all(data.train_inputs[2] == 90) and np.abs(data.train_inputs[3].astype(int) - 30).max() <= 2
    out = capsys.readouterr().out
    assert "converted to RGB: 1 greyscale, 1 palette, 1 alpha" in out and "1 hidden file(s)" in out


def test_resizing_takes_the_centre_of_the_shorter_side():
    stripes = np.zeros((3, 8, 24), np.uint8)
    stripes[:, :, 8:16] = 255  # the middle third white: exactly what the centre crop of 8 x 8 keeps
    image = Image.fromarray(stripes.transpose(1, 2, 0))
    assert np.all(np.asarray(imagefolder.resized(image, 8)) == 255)
    assert imagefolder.resized(image, 4).size == (4, 4)


def folder_file(folder, name, file, split="train"):
    (folder / split / name).mkdir(parents=True, exist_ok=True)
    return folder / split / name / file


def bad_folder(case, root):
    """DIR for one bad layout (None: DIR does not exist)."""
    folder = root / "bad"
    good = np.zeros((3, 8, 8), np.uint8)
    if case == "missing":
        return folder
    if case == "no train":
        write_png(folder / "test" / "a" / "0.png", good)
        return folder
    (folder / "train").mkdir(parents=True)
    if case == "no class folders":
        return folder
    write_png(folder / "train" / "a" / "0.png", good)
    if case == "one class":
        return folder
    write_png(folder / "train" / "b" / "0.png", good)
    if case == "empty class":
        (folder / "train" / "c").mkdir()
    elif case == "empty test class":
        (folder / "test" / "a").mkdir(parents=True)
    elif case == "test class not in training":
        write_png(folder / "test" / "z" / "0.png", good)
    elif case == "not an image":
        (folder / "train" / "b" / "notes.txt").write_text("hello")
    elif case == "truncated image":
        write_png(folder / "train" / "b" / "1.png", np.full((3, 32, 32), 7, np.uint8))
        path = folder / "train" / "b" / "1.png"
        path.write_bytes(path.read_bytes()[:60])
    elif case == "image outside a class folder":
        write_png(folder / "train" / "loose.png", good)
    return folder


BAD_FOLDERS = {
    "missing": "does not exist or is not a folder; pass imagefolder:DIR with DIR/train/<class>/<image>",
    "no train": "has no train/ folder of class folders; expected",
    "no class folders": "train holds no class folders; expected",
    "one class": "train has 1 class folder (a); a classifier needs at least 2",
    "empty class": "class folder {dir}/train/c holds no image; every class folder needs at least one",
    "empty test class": "class folder {dir}/test/a holds no image",
    "test class not in training": "{dir}/test/z is a test class with no training folder {dir}/train/z",
    "not an image": "cannot read {dir}/train/b/notes.txt as an image (UnidentifiedImageError",
    "truncated image": "cannot read {dir}/train/b/1.png as an image",
    "image outside a class folder": "{dir}/train/loose.png is not inside a class folder",
}


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_a_bad_folder_is_one_line_exit_2_and_nothing_written(case, tmp_path, cli_error, monkeypatch):
    """Through study/tune.py, as a user meets it; the cache root ($SOFTMAX_STUDY_CACHE) is left untouched too."""
    from study.frozen import cache_root

    folder = bad_folder(case, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    before, cache_before = listing(tmp_path), listing(cache_root()) if cache_root().exists() else {}
    code, stderr = cli_error(tune_command.main, "--preset", "smoke", "--data", f"imagefolder:{folder}",
                             "--storage", str(tmp_path / "runs"), "--head", "softmax")
    assert_one_line_error(code, stderr, BAD_FOLDERS[case].format(dir=folder))
    assert listing(tmp_path) == before
    assert (listing(cache_root()) if cache_root().exists() else {}) == cache_before


def test_without_a_folder_and_with_a_preset_too_big_for_the_folder_it_is_one_line(tmp_path, cli_error):
    assert_one_line_error(*cli_error(tune_command.main, "--preset", "smoke", "--data", "imagefolder:",
                                     "--storage", str(tmp_path / "runs")),
                          "data source 'imagefolder' needs a folder: imagefolder:DIR")
    folder = tmp_path / "small"
    for name in ("a", "b", "c"):
        for i in range(4):
            write_png(folder / "train" / name / f"{i}.png", np.full((3, 8, 8), i, np.uint8))
    code, stderr = cli_error(tune_command.main, "--preset", "smoke-frozen", "--data", f"imagefolder:{folder}",
                             "--storage", str(tmp_path / "runs"), "--image-size", "16")
    assert_one_line_error(code, stderr, f"preset smoke-frozen does not fit --data imagefolder:{folder}: "
                                        "val_size=500 must be between 1 and 8 (the data has 9 training examples)")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(DataError, match="cannot read"):  # the source itself, outside the command
        (folder / "train" / "a" / "0.png").write_bytes(b"\x89PNG broken")
        create_source(f"imagefolder:{folder}", image_size=16)


def test_with_skip_bad_images_files_that_do_not_decode_are_left_out_counted_and_recorded(tmp_path, capsys):
    from study.search.spec import StudySpec

    folder = bad_folder("truncated image", tmp_path)  # train/a/0.png, train/b/0.png, train/b/1.png (truncated)
    (folder / "train" / "b" / "notes.txt").write_text("hello")
    for name in ("a/1.png", "b/2.png"):
        write_png(folder / "train" / name, np.full((3, 8, 8), 3, np.uint8))
    write_png(folder / "test" / "a" / "0.png", np.full((3, 8, 8), 5, np.uint8))
    (folder / "test" / "a" / "1.png").write_bytes(b"\x89PNG broken")
    data = create_source(f"imagefolder:{folder}", image_size=16, skip_bad_images=True)
    assert data.skipped == ("train/b/1.png", "train/b/notes.txt", "test/a/1.png")
    assert data.train_labels.tolist() == [0, 0, 1, 1] and data.test_labels.tolist() == [0]
    assert np.all(data.test_inputs == 5)
    assert f"left out 3 file(s) that do not decode (--skip-bad-images), the first {folder}/train/b/1.png" \
        in capsys.readouterr().out
    # The cache entry records what was left out: the same without decoding, and refused without the flag.
    again = create_source(f"imagefolder:{folder}", image_size=16, skip_bad_images=True)
    assert again.skipped == data.skipped and np.array_equal(again.train_inputs, data.train_inputs)
    with pytest.raises(DataError, match=f"cannot read {folder}/train/b/1.png as an image \\(it did not decode when "
                                        "this folder was cached\\); remove or replace it, or pass --skip-bad-images"):
        create_source(f"imagefolder:{folder}", image_size=16)
    cfg = TrainConfig(data=DataConfig(source=f"imagefolder:{folder}", image_size=16, skip_bad_images=True,
                                      val_size=2))
    assert load_splits(cfg).skipped_inputs == 3
    spec = StudySpec(name="r", heads=("softmax",), preset="smoke", train=cfg, skipped_images=3)
    assert StudySpec.from_dict(json.loads(json.dumps(spec.to_dict()))).skipped_images == 3
    # A class none of whose training images decodes is refused.
    for name in ("0.png", "1.png"):
        (folder / "train" / "a" / name).write_bytes(b"not a png")
    with pytest.raises(DataError, match=f"class folder {folder}/train/a holds no image that decodes"):
        create_source(f"imagefolder:{folder}", image_size=16, skip_bad_images=True)


def test_image_size_is_recorded_in_study_json_and_both_kinds_of_study_train_on_a_folder(tmp_path, capsys):
    """End to end in-process, without Ray (tests/test_tune.py runs the Ray pipeline on cifar100): the spec records
    the resolution; an end-to-end trial trains the CNN on the images; a frozen study trains the backbone on random
    groups of the folder's classes (20 classes: 4 groups of 5) and caches its features."""
    from study.backbone_recipe import backbone_labels
    from study.search.from_args import spec_from_args

    folder = tmp_path / "f20"
    rng = np.random.default_rng(0)
    for k in range(20):
        for i in range(5):
            base = np.full((3, 16, 16), k * 12, np.int64)
            write_png(folder / "train" / f"class{k:02d}" / f"{i}.png",
                      np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8))
    args = tune_command.build_parser().parse_args(["--data", f"imagefolder:{folder}", "--image-size", "16",
                                                   "--preset", "smoke", "--storage", str(tmp_path / "runs")])
    spec, _ = spec_from_args(args, [], gpu_visible=False)
    assert json.loads(json.dumps(spec.to_dict()))["train"]["data"]["image_size"] == 16
    train = TrainConfig(data=DataConfig(source=f"imagefolder:{folder}", image_size=16, val_size=20),
                        model=ModelConfig(backbone="tinyvgg", backbone_knobs={"width": 4}),
                        optim=OptimConfig(batch_size=16, epochs=1, lr=0.05), run=RunConfig(device="cpu"))
    splits = load_splits(train)
    assert splits.train_images.shape == (60, 3, 16, 16) and splits.class_info.num_classes == 20
    history = list(fit(train, splits))
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"])
    frozen = dataclasses.replace(train, frozen=FrozenConfig(enabled=True, epochs=1, batch_size=16))
    labels, names, count = backbone_labels(frozen, create_source(f"imagefolder:{folder}", image_size=16))
    assert count == 4 and sorted(np.bincount(labels)) == [20] * 4  # 4 groups of 5 classes x 4 training images
    features = load_splits(frozen)
    assert features.holds_features and features.train_images.shape == (60, 8)  # tinyvgg-4: d = 8
    history = list(fit(frozen, features))
    assert np.isfinite(history[-1]["train_loss"])
    out = capsys.readouterr().out
    assert "frozen backbone: features of 80 training and 20 test images cached in" in out
    assert "20 classes, 80 training and 20 test images at 16 x 16" in out
