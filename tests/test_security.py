"""Files the study reads back never run code: a planted pickle as the cached backbone, as a trial checkpoint, in a
features file, in a saved prediction or in the CIFAR-100 files leaves no mark, and the run rebuilds or refuses it
in one line.

Each plant is an object whose unpickling creates a file (the mark). Each test first shows that an unsafe load of the
same bytes would leave the mark, so a passing test means the study's own load refused it, not that the plant was
harmless."""
import pickle

import numpy as np
import pytest
import torch

from study import frozen, backbone_recipe
from study.errors import ConfigError, DataError
from study.files import UnsafeOrDamagedFile, load_arrays, load_tensors

from test_frozen import Counting, entry, features, frozen_cfg
from test_train import FakeTuneSession, tiny_config


class Plant:
    """Unpickling it calls open(mark, "w"): it creates the file `mark`, as planted code would."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return open, (self.mark, "w")


def assert_plant_is_live(path, mark, load):
    """The planted file does run code when loaded unsafely (then the mark is removed again)."""
    load(path)
    assert mark.exists(), "the plant did not work: this test would prove nothing"
    mark.unlink()


def unsafe_torch_load(path):
    torch.load(path, weights_only=False)  # noqa: S614 - the unsafe load this test guards against, on its own plant


def unsafe_np_load(path):
    with np.load(path, allow_pickle=True) as arrays:
        [arrays[key] for key in arrays.files]


@pytest.fixture
def mark(tmp_path):
    return tmp_path / "PLANTED-CODE-RAN"


def test_a_planted_cached_backbone_never_runs_and_the_entry_is_rebuilt(data, fake_data_dir, tmp_path, mark,
                                                                         monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    cache = tmp_path / "cache"
    train, _, _, _ = features(cfg, data, cache)
    folder = entry(cache)
    # The case of the report: a planted backbone.pt, and meta.json / features.npz gone, as in a half-copied entry.
    torch.save({"state_dict": Plant(mark)}, folder / frozen.BACKBONE_FILE)
    (folder / frozen.META_FILE).unlink()
    (folder / frozen.FEATURES_FILE).unlink()
    assert_plant_is_live(folder / frozen.BACKBONE_FILE, mark, unsafe_torch_load)

    again, _, meta, lines = features(cfg, data, cache)
    assert not mark.exists()
    assert [line for line in lines if "unreadable" in line] == [
        line for line in lines if str(folder / frozen.BACKBONE_FILE) in line and "training it again" in line]
    assert counter.calls == 2 and meta["recipe"] == backbone_recipe.recipe(cfg)
    np.testing.assert_array_equal(again, train)  # the same recipe and seed: the same backbone, the same features
    assert isinstance(load_tensors(folder / frozen.BACKBONE_FILE)["state_dict"], dict)  # rebuilt as plain tensors


def test_a_planted_features_file_never_runs_and_is_rebuilt_from_the_backbone(data, fake_data_dir, tmp_path, mark,
                                                                           monkeypatch):
    counter = Counting(monkeypatch)
    cfg = frozen_cfg(fake_data_dir)
    train, _, _, _ = features(cfg, data, tmp_path)
    npz = entry(tmp_path) / frozen.FEATURES_FILE
    frozen.save_arrays(npz, train=np.array([Plant(mark)], dtype=object), test=np.zeros(3))  # pickled by np.savez
    assert_plant_is_live(npz, mark, unsafe_np_load)

    again, _, _, lines = features(cfg, data, tmp_path)
    assert not mark.exists()
    (line,) = [line for line in lines if "unreadable" in line]
    assert str(npz) in line and "array 'train' holds Python objects" in line and "rebuilding" in line
    assert counter.calls == 1  # the backbone was whole: only its features were extracted again
    np.testing.assert_array_equal(again, train)


def test_a_planted_trial_checkpoint_is_refused_in_one_line_and_never_runs(splits, tmp_path, mark, monkeypatch):
    from study.search import trainable

    folder = tmp_path / "checkpoint_000001"
    folder.mkdir()
    state = folder / trainable.STATE_FILE
    torch.save({"model": Plant(mark), "epoch": 1}, state)
    assert_plant_is_live(state, mark, unsafe_torch_load)

    session = FakeTuneSession(tmp_path, checkpoint=FakeTuneSession.Checkpoint(folder))
    monkeypatch.setattr(trainable, "tune", session)
    with pytest.raises(ConfigError) as refused:
        trainable.train_trial({"lr": 0.05, "weight_decay": 1e-4}, splits, tiny_config(epochs=2))
    message = str(refused.value)
    assert not mark.exists() and session.reports == []  # refused before any training
    assert len(message.splitlines()) == 1 and f"trial checkpoint {folder} is refused" in message
    assert "start a new run" in message


def test_a_checkpoint_of_this_study_still_loads_weights_only(splits, tmp_path, monkeypatch):
    """What the trainable saves (model, optimiser, schedule, RNG states) is all tensors and plain values."""
    from study.search import trainable

    session = FakeTuneSession(tmp_path)
    monkeypatch.setattr(trainable, "tune", session)
    trainable.train_trial({"lr": 0.05, "weight_decay": 1e-4}, splits, tiny_config(epochs=2))
    (kept,) = session.checkpoints
    state = load_tensors(kept.path / trainable.STATE_FILE)
    assert state["epoch"] == 1 and set(state) >= {"model", "optimizer", "scheduler", "generator", "torch_rng"}


def test_a_planted_prediction_is_never_loaded_and_counts_as_damaged(tmp_path, mark):
    from study.search.rundir import arrays_readable

    npz = tmp_path / "softmax_seed1.npz"
    np.savez(npz, log_probs=np.array([Plant(mark)], dtype=object), labels=np.zeros(1, dtype=np.int64))
    assert_plant_is_live(npz, mark, unsafe_np_load)
    assert arrays_readable(npz) is False  # the analysis trains that model again
    with pytest.raises(UnsafeOrDamagedFile, match=r"array 'log_probs' holds Python objects \(a pickle\)"):
        load_arrays(npz)
    assert load_arrays(npz, ("labels",))["labels"].tolist() == [0]  # plain arrays beside it still read
    assert not mark.exists()


def test_a_planted_cifar_file_is_refused_in_one_line(fake_data_dir, tmp_path, mark):
    import shutil

    from study.sources.cifar100 import load_cifar100

    root = tmp_path / "data"
    shutil.copytree(fake_data_dir, root)
    meta = root / "cifar-100-python" / "meta"
    meta.write_bytes(pickle.dumps({"fine_label_names": Plant(mark), "coarse_label_names": []}))
    with pytest.raises(DataError) as refused:
        load_cifar100(str(root))
    message = str(refused.value)
    assert not mark.exists()
    assert len(message.splitlines()) == 1 and f"{meta} is refused: it refers to io.open" in message


def test_the_real_cifar_files_pass_the_restricted_unpickler(fake_data_dir):
    from study.sources.cifar100 import load_cifar100

    data = load_cifar100(str(fake_data_dir))  # written by pickle with numpy arrays, as the official files are
    assert data.train_inputs.dtype == np.uint8 and len(data.class_names) == 100


@pytest.fixture
def data(fake_data_dir):
    from study.sources.cifar100 import load_cifar100

    return load_cifar100(str(fake_data_dir))


@pytest.fixture(scope="module")
def splits(fake_data_dir):
    from study.sources.cifar100 import load_cifar100
    from study.splits import make_splits

    return make_splits(load_cifar100(str(fake_data_dir)), val_size=100)
