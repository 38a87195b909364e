"""Loader, validation, splits and device batches on tiny datasets written in the real pickle format."""
import pickle

import numpy as np
import pytest
import torch

from fake_cifar import write_fake_cifar100
from study.sources import cifar100 as data_module
from study.batches import DeviceBatches, FeatureBatches
from study.sources.cifar100 import CHANNEL_MEAN, CHANNEL_STD, load_cifar100
from study.errors import ConfigError, DataError
from study.splits import make_splits, stratified_take, tuning_indices, unsplit_classes


def test_loads_fake_dataset(fake_data_dir):
    data = load_cifar100(str(fake_data_dir), allow_download=False)
    assert data.train_inputs.shape == (600, 3, 32, 32) and data.train_inputs.dtype == np.uint8
    assert data.test_inputs.shape == (200, 3, 32, 32)
    assert list(data.top_groups()[:3]) == [0, 1, 2] and len(data.class_names) == 100


def test_accepts_the_inner_folder_too(fake_data_dir):
    assert len(load_cifar100(str(fake_data_dir / "cifar-100-python")).train_labels) == 600


def test_env_var_is_used(fake_data_dir, monkeypatch):
    monkeypatch.setenv("SOFTMAX_STUDY_DATA", str(fake_data_dir))
    assert len(load_cifar100().train_labels) == 600


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_cifar100(str(tmp_path / "nowhere"))


def test_empty_dir_without_download(tmp_path):
    with pytest.raises(DataError, match="CIFAR-100 not found in .*expected cifar-100-python"):
        load_cifar100(str(tmp_path), allow_download=False)


@pytest.mark.parametrize("inner", [True, False], ids=["cifar-100-python/", "the folder itself"])
def test_a_folder_without_meta_names_the_missing_file_and_downloads_nothing(tmp_path, monkeypatch, inner):
    """train and test present, meta missing: one line naming the folder and the file, not a download over them."""
    folder = write_fake_cifar100(tmp_path) / "cifar-100-python"
    (folder / "meta").unlink()
    attempts = []
    monkeypatch.setattr(data_module, "download", lambda root: attempts.append(root))
    with pytest.raises(DataError) as error:
        load_cifar100(str(folder if inner else tmp_path))
    assert str(error.value) == (f"CIFAR-100 in {folder} is incomplete: missing meta (found train, test); put the "
                                "missing file(s) there, or pass --data-dir with a complete copy")
    assert not attempts and sorted(p.name for p in folder.iterdir()) == ["test", "train"]


def test_failed_download_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="downloading it failed .*network is unreachable.*--data-dir"):
        load_cifar100(str(tmp_path))


def rewrite(root, name, mutate):
    path = root / "cifar-100-python" / name
    with open(path, "rb") as f:
        content = pickle.load(f, encoding="latin1")
    mutate(content)
    with open(path, "wb") as f:
        pickle.dump(content, f)


@pytest.mark.parametrize("mutate,message", [
    (lambda c: c.update(data=c["data"][:, :100]), "shape \\(600, 100\\); expected uint8 with shape \\(N, 3072\\)"),
    (lambda c: c.update(data=c["data"].astype(np.float32)), "float32"),
    (lambda c: c["fine_labels"].__setitem__(0, 100), "fine_labels span 0..100; expected 0..99"),
    (lambda c: c.pop("coarse_labels"), "lacks key\\(s\\) coarse_labels"),
    (lambda c: c.update(fine_labels=c["fine_labels"][:-1]), "599 entries for 600 images"),
])
def test_malformed_train_pickle(tmp_path, mutate, message):
    root = write_fake_cifar100(tmp_path)
    rewrite(root, "train", mutate)
    with pytest.raises(DataError, match=message):
        load_cifar100(str(root))


def test_unequal_class_counts(tmp_path):
    root = write_fake_cifar100(tmp_path)

    def relabel(c):
        c["fine_labels"][c["fine_labels"].index(1)] = 0
        c["coarse_labels"] = [lab % 20 for lab in c["fine_labels"]]

    rewrite(root, "train", relabel)
    with pytest.raises(DataError, match="images per fine class range 5..7"):
        load_cifar100(str(root))


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_pickle(tmp_path, damage):
    root = write_fake_cifar100(tmp_path)
    path = root / "cifar-100-python" / "test"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"not a pickle at all")
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_cifar100(str(root))


def test_download_is_attempted_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, md5):
        calls.append((url, md5))
        write_fake_cifar100(download_root)

    import torchvision.datasets.utils as tv_utils
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    assert len(load_cifar100(str(tmp_path)).train_labels) == 600
    assert calls == [(data_module.URL, data_module.TGZ_MD5)]


def test_stratified_take_is_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 7)
    chosen = stratified_take(labels, 20, seed=3)
    assert np.bincount(labels[chosen]).tolist() == [2] * 10
    assert np.array_equal(chosen, stratified_take(labels, 20, seed=3))
    assert not np.array_equal(chosen, stratified_take(labels, 20, seed=4))


@pytest.mark.parametrize("sizes,count,expected", [
    ((5, 3, 2), 5, [3, 1, 1]),  # quotas 2.5, 1.5, 1.0: the one left over goes to the first largest remainder
    ((7, 2, 1), 4, [3, 1, 0]),  # quotas 2.8, 0.8, 0.4: two left over, to the two largest remainders
])
def test_stratified_take_largest_remainders_by_hand(sizes, count, expected):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    assert np.bincount(labels[stratified_take(labels, count, seed=0)], minlength=len(sizes)).tolist() == expected


def test_class_embeddings_against_a_loop():
    from study.splits import class_embeddings

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 3, 32, 32), dtype=np.uint8)
    labels = np.array([0, 0, 1, 1, 1, 3, 3])  # class 2 has no image
    means = np.zeros((4, 3 * 8 * 8))
    for k in range(4):
        members = [images[i].astype(float) for i in range(7) if labels[i] == k]
        for m in members:
            pooled = [m[c, 4 * y:4 * y + 4, 4 * x:4 * x + 4].mean()
                      for c in range(3) for y in range(8) for x in range(8)]
            means[k] += np.array(pooled) / len(members)
    expected = (means - means.mean(0)) / means.std(0)
    np.testing.assert_allclose(class_embeddings(images, labels, 4), expected, atol=1e-6)


def test_tuning_split_is_disjoint_stratified_and_fixed(fake_data_dir):
    data = load_cifar100(str(fake_data_dir))
    a = make_splits(data, val_size=100)
    b = make_splits(data, val_size=100)
    assert a.eval_split == "val" and len(a.eval_labels) == 100 and len(a.train_labels) == 500
    assert np.bincount(a.eval_labels).tolist() == [1] * 100
    assert np.array_equal(a.eval_images, b.eval_images)
    train_rows = {img.tobytes() for img in a.train_images}
    assert not any(img.tobytes() in train_rows for img in a.eval_images)


def test_split_sizes_at_their_bounds_and_class_info(fake_data_dir):
    data = load_cifar100(str(fake_data_dir))  # 600 training images
    for val_size in (0, 600):
        with pytest.raises(ConfigError, match=f"val_size={val_size}"):
            make_splits(data, val_size=val_size)
    assert len(make_splits(data, val_size=1).eval_labels) == 1
    assert len(make_splits(data, val_size=100, subset=500).train_labels) == 500  # all that is left
    with pytest.raises(ConfigError, match="subset=0"):
        make_splits(data, val_size=100, subset=0)
    a, b = make_splits(data, val_size=100, subset=150), make_splits(data, val_size=100, subset=150)
    assert np.array_equal(a.train_images, b.train_images)  # the subset is seeded too
    info = a.class_info
    assert info.coarse_of_fine == tuple(data.top_groups()) and info.fine_names == data.class_names
    assert info.coarse_names == data.group_names and len(info.class_counts) == 100


def test_final_split_trains_on_the_tuning_rows_evaluates_test_and_keeps_val_beside(fake_data_dir):
    """A final model trains on exactly the tuning split's training images (subset included), is evaluated on test,
    and holds the tuning split's validation images for one evaluation after training."""
    data = load_cifar100(str(fake_data_dir))
    for subset in (None, 300):
        tuning = make_splits(data, val_size=100, subset=subset, split_seed=3)
        final = make_splits(data, val_size=100, subset=subset, split_seed=3, final=True)
        assert final.eval_split == "test" and len(final.eval_labels) == 200 and tuning.val_images is None
        np.testing.assert_array_equal(final.train_images, tuning.train_images)
        np.testing.assert_array_equal(final.train_labels, tuning.train_labels)
        np.testing.assert_array_equal(final.val_images, tuning.eval_images)
        np.testing.assert_array_equal(final.val_labels, tuning.eval_labels)
        np.testing.assert_array_equal(final.eval_images, data.test_inputs)
        assert len(final.train_labels) == (500 if subset is None else 300) and len(final.val_labels) == 100
        # The heads are built from the same class counts and class vectors.
        assert final.class_info.class_counts == tuning.class_info.class_counts
        np.testing.assert_array_equal(final.class_info.class_embeddings, tuning.class_info.class_embeddings)


def test_subset_and_class_info(fake_data_dir):
    data = load_cifar100(str(fake_data_dir))
    s = make_splits(data, val_size=100, subset=200)
    assert len(s.train_labels) == 200 and np.bincount(s.train_labels).tolist() == [2] * 100
    assert s.class_info.class_counts == (2,) * 100 and s.class_info.class_embeddings.shape == (100, 192)
    with pytest.raises(ConfigError, match="subset=9999"):
        make_splits(data, val_size=100, subset=9999)


def test_batches_normalise_and_cover_an_epoch():
    images = np.random.default_rng(0).integers(0, 256, size=(10, 3, 32, 32), dtype=np.uint8)
    batches = DeviceBatches(images, np.arange(10), torch.device("cpu"), CHANNEL_MEAN, CHANNEL_STD)
    seen = [y for _, y in batches.train_batches(4, torch.Generator().manual_seed(0), augment=False)]
    assert sorted(torch.cat(seen).tolist()) == list(range(10))  # 4 + 4 + 2
    x, _ = next(batches.eval_batches(10))
    expected = (images[0, 0].astype(np.float32) - 0.50708 * 255) / (0.26733 * 255)
    assert np.allclose(x[0, 0].numpy(), expected, atol=1e-4)


def test_feature_batches_are_the_seeded_permutations_slices():
    """An epoch of frozen features (one gather of the whole split, then slices) is the batches a gather per batch
    gives: each batch the rows of the next slice of the generator's permutation, features with their labels."""
    features = torch.randn(11, 3, generator=torch.Generator().manual_seed(2))
    batches = FeatureBatches(features.numpy(), np.arange(11) % 4, torch.device("cpu"))
    order = torch.randperm(11, generator=torch.Generator().manual_seed(5))
    seen = list(batches.train_batches(4, torch.Generator().manual_seed(5)))
    assert [len(y) for _, y in seen] == [4, 4, 3]
    for i, (x, y) in enumerate(seen):
        index = order[i * 4: (i + 1) * 4]
        assert torch.equal(x, features[index]) and torch.equal(y, torch.as_tensor(np.arange(11) % 4)[index])


@pytest.mark.parametrize("images,batch,sizes", [
    (10, 4, [4, 4, 2]),  # the last short batch is kept
    (9, 4, [4, 4]),  # a last batch of one image is dropped (batch norm needs two)
    (8, 4, [4, 4]),
])
def test_last_short_batch(images, batch, sizes):
    data = np.zeros((images, 3, 32, 32), dtype=np.uint8)
    batches = DeviceBatches(data, np.arange(images), torch.device("cpu"), CHANNEL_MEAN, CHANNEL_STD)
    seen = [y for _, y in batches.train_batches(batch, torch.Generator().manual_seed(0), augment=False)]
    assert [len(y) for y in seen] == sizes and batches.num_batches(batch) == len(sizes)
    assert len(set(torch.cat(seen).tolist())) == sum(sizes)  # no image twice in an epoch
    assert [len(y) for _, y in batches.eval_batches(batch)] == [batch] * (images // batch) + (
        [images % batch] if images % batch else [])  # evaluation keeps every image


def test_crop_and_flip_are_translations_of_the_original():
    image = np.arange(3 * 32 * 32).reshape(1, 3, 32, 32) % 251 + 1  # no zeros: padding is recognisable
    batches = DeviceBatches(np.repeat(image, 64, 0).astype(np.uint8), np.zeros(64), torch.device("cpu"),
                            CHANNEL_MEAN, CHANNEL_STD)
    original = torch.as_tensor(image[0]).to(torch.uint8)
    out = batches.random_crop_flip(batches.images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
    for crop in out:
        matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
                   if torch.equal(crop, (padded[:, dy:dy + 32, dx:dx + 32].flip(2) if flip
                                         else padded[:, dy:dy + 32, dx:dx + 32]))]
        assert matches, "every augmented image is a shifted (and maybe flipped) copy"
    assert len({tuple(c.flatten()[:64].tolist()) for c in out}) > 10  # and they differ


def test_classes_too_small_to_split_stay_in_training_and_two_examples_split():
    """Ten classes of one example, one of ten, one of two; 6 held out. Only the two splittable classes give
    examples, in proportion (5 and 1); a class of exactly two gives one; every class keeps a training example."""
    labels = np.array(list(range(10)) + [10] * 10 + [11] * 2)
    train, val = tuning_indices(labels, 6, split_seed=0)
    assert sorted(labels[val].tolist()) == [10] * 5 + [11]
    assert set(labels[train].tolist()) == set(range(12)) and unsplit_classes(labels) == 10
    # Without small classes the split is the plain stratified draw, as before they were handled.
    even = np.repeat(np.arange(5), 4)
    assert np.array_equal(tuning_indices(even, 5, 3)[1], stratified_take(even, 5, 3))
