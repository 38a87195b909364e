"""The features:FILE.npz data source: files in the format `python -m study.synthetic` writes, every head trained on
them at K = 2, K = 3 with a hierarchy and K = 1,000 (registry-driven), the K-aware tuning split, and every bad file
refused in one line."""
import numpy as np
import optuna
import pytest
import torch

from search_spaces import space_for
from study.config import DataConfig, FrozenConfig, OptimConfig, RunConfig, TrainConfig, with_sampled
from study.errors import DataError
from study.files import save_arrays
from study.heads import list_heads
from study.heads.trees import create_tree
from study.inputs import load_splits
from study.sources import create_source, source_inputs
from study.synthetic import generate
from study.trainer import Trainer, fit


def write_features(path, classes, hierarchy=True, **options):
    """A features file as `python -m study.synthetic` writes it; without `hierarchy`, no 'parents' key."""
    arrays = generate(classes, **options)
    if not hierarchy:
        del arrays["parents"]
    save_arrays(path, **arrays)
    return path


SHAPES = {  # name: (classes, hierarchy, generate() options)
    "K=2": (2, False, dict(dim=8, train=60, test=20)),
    "K=3 with a hierarchy": (3, True, dict(dim=8, train=60, test=20, branching=2)),
    "K=1000 with a hierarchy": (1000, True, dict(dim=16, train=3000, test=500)),
}


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    return {name: write_features(folder / f"{classes}.npz", classes, hierarchy, **options)
            for name, (classes, hierarchy, options) in SHAPES.items()}


def features_config(path, head="softmax", **data) -> TrainConfig:
    return TrainConfig(data=DataConfig(source=f"features:{path}", val_size=None, **data),
                       optim=OptimConfig(batch_size=64, epochs=1, lr=0.05), run=RunConfig(device="cpu"),
                       frozen=FrozenConfig(enabled=True, neck_width=16)).replace(**{"model.head": head})


def test_a_synthetic_file_reads_back_as_written(feature_files, tmp_path):
    path = feature_files["K=3 with a hierarchy"]
    data = create_source(f"features:{path}")
    arrays = generate(3, dim=8, train=60, test=20, branching=2)
    assert data.num_classes == 3 and data.holds_features and source_inputs(f"features:{path}") == "features"
    assert np.array_equal(data.train_inputs, arrays["train_features"]) and data.train_inputs.dtype == np.float32
    assert np.array_equal(data.test_labels, arrays["test_labels"])
    assert data.class_names == ("class_00000", "class_00001", "class_00002")
    assert data.parents == tuple(int(p) for p in arrays["parents"]) and len(data.checksum) == 64
    # Without class names, K is the largest label + 1 and the classes are numbered.
    bare = {k: v for k, v in arrays.items() if k in ("train_features", "train_labels", "test_features", "test_labels")}
    save_arrays(tmp_path / "bare.npz", **bare)
    data = create_source(f"features:{tmp_path / 'bare.npz'}")
    assert data.class_names == ("class_0", "class_1", "class_2") and data.parents is None


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("head", list_heads())
def test_every_head_trains_on_a_features_file(head, shape, feature_files):
    """A configuration the head's search space draws for this data (Optuna, seeded), trained one epoch on the
    file's tuning split and evaluated: finite loss, a prediction for every validation row, and for the
    hierarchical head's `coarse` layout the data's own hierarchy at any depth."""
    path = feature_files[shape]
    cfg = features_config(path, head)
    splits = load_splits(cfg)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    trial = study.ask()
    space_for(head, splits.class_info)(trial)
    cfg = with_sampled(cfg, {**trial.params, "lr": 0.05})
    torch.manual_seed(0)
    trainer = Trainer(cfg, splits)
    metrics = list(fit(cfg, trainer=trainer))[-1]
    assert np.isfinite(metrics["train_loss"]) and 0 <= metrics["val_acc"] <= 1
    evaluation = trainer.evaluate()
    assert (len(evaluation), evaluation.num_classes) == (len(splits.eval_labels), SHAPES[shape][0])
    assert evaluation.finite or head in ("sparsemax", "entmax")


def test_the_coarse_layout_follows_a_deep_hierarchy(feature_files):
    splits = load_splits(features_config(feature_files["K=1000 with a hierarchy"]))
    tree = create_tree("coarse", splits.class_info)
    # study.synthetic's 1,000 classes: a root of 10 groups of 10 groups of 10 classes: three levels of decisions
    assert tree.depth() == 3 and len(tree.children[0]) == 10 and tree.leaf_classes() == list(range(1000))
    assert "hierarchy sets the shape (10 top-level groups, 3 levels" in tree.note
    assert splits.class_info.coarse_of_fine[:3] == (0, 0, 0) and len(set(splits.class_info.coarse_of_fine)) == 10


def test_the_tuning_split_holds_out_a_share_and_keeps_classes_too_small_to_split(tmp_path):
    # Zipf frequencies over 1,000 classes with 1,500 rows: hundreds of classes have a single training row.
    path = write_features(tmp_path / "zipf.npz", 1000, dim=4, train=1500, test=300)
    cfg = features_config(path)
    splits = load_splits(cfg)
    labels = create_source(f"features:{path}").train_labels
    single = int((np.bincount(labels, minlength=1000) == 1).sum())
    assert splits.unsplit_classes == single > 100
    from study.splits import unsplit_line
    assert unsplit_line(splits) == (f"{single} of 1000 classes have fewer than 2 training examples: each stays "
                                    "wholly in training (none of it in validation)")
    assert len(splits.eval_labels) == 150  # 10 % of the 1,500 training rows
    assert set(np.unique(splits.train_labels)) == set(range(1000))  # every class keeps training examples
    final = load_splits(cfg.replace(**{"data.final": True}))
    assert len(final.train_labels) == 1350 and len(final.eval_labels) == 300 and len(final.val_labels) == 150
    assert final.unsplit_classes == single  # a final model trains on the tuning split's rows
    again = load_splits(cfg)
    assert np.array_equal(again.eval_labels, splits.eval_labels)  # seeded


def valid_arrays():
    return generate(4, dim=3, train=40, test=12, branching=2)


def changed(**values):
    arrays = {**valid_arrays(), **values}
    return {k: v for k, v in arrays.items() if v is not None}


BAD_FILES = {  # name: (arrays, what the one line says)
    "missing key": (changed(test_labels=None), "lacks key(s) test_labels"),
    "float labels": (changed(train_labels=np.zeros(40)),
                     "'train_labels' is float64 with shape (40,); expected integers"),
    "negative label": (changed(test_labels=np.full(12, -1)), "'test_labels' holds the label -1"),
    "label beyond the names": (changed(train_labels=np.full(40, 4)), "holds the label 4, but 'class_names' names 4"),
    "nan feature": (changed(train_features=np.full((40, 3), np.nan, np.float32)), "non-finite value (nan) at row 0"),
    "infinite feature": (changed(test_features=np.full((12, 3), np.inf)), "non-finite value (inf) at row 0"),
    "width mismatch": (changed(test_features=np.zeros((12, 5), np.float32)), "3 wide but test_features 5"),
    "unseen test class": (changed(train_labels=np.arange(40) % 3, test_labels=np.full(12, 3)),
                          "test class 3 (class_00003) has no training example"),
    "one class": (changed(train_labels=np.zeros(40, np.int64), test_labels=np.zeros(12, np.int64),
                          class_names=np.array(["only"]), parents=None), "has 1 class; a classifier needs at least 2"),
    "parents cycle": (changed(parents=np.array([4, 4, 5, 5, 5, 4])), "cycle through node 4"),
    "parent out of range": (changed(parents=np.array([4, 4, 5, 5, 9, -1])), "gives node 4 the parent 9"),
    "class as inner node": (changed(parents=np.array([4, 0, 5, 5, 6, 6, -1])), "makes class 0 the parent of node 1"),
    "object array": (changed(train_labels=np.array([1, "a"] * 20, dtype=object)), "holds Python objects"),
    "features not 2-D": (changed(train_features=np.zeros(40, np.float32)), "expected numbers with shape (N, d)"),
}


def write_bad_files(folder):
    for name, (arrays, _) in BAD_FILES.items():
        with open(folder / f"{name.replace(' ', '_')}.npz", "wb") as f:
            np.savez(f, **arrays)  # object arrays are pickled by savez: the file a careless export would write
    (folder / "not_an_npz.npz").write_text("plain text")
    return folder


@pytest.mark.parametrize("name", BAD_FILES)
def test_every_bad_file_is_one_line_naming_the_fault(name, tmp_path):
    path = write_bad_files(tmp_path) / f"{name.replace(' ', '_')}.npz"
    with pytest.raises(DataError, match=BAD_FILES[name][1].replace("(", r"\(").replace(")", r"\)")) as error:
        create_source(f"features:{path}")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_file_changed_after_tuning_is_refused(feature_files, tmp_path):
    from study.errors import StudyError
    from study.frozen import check_same_features

    path = write_features(tmp_path / "f.npz", 3, dim=4, train=30, test=9)
    tuned = load_splits(features_config(path)).features_id
    check_same_features(tuned, load_splits(features_config(path)), "--resume")  # the same file: fine
    write_features(path.with_name("g.npz"), 3, dim=4, train=30, test=9, seed=1)
    path.write_bytes(path.with_name("g.npz").read_bytes())
    with pytest.raises(StudyError, match="--resume: the features file has changed since this run was tuned on it"):
        check_same_features(tuned, load_splits(features_config(path)), "--resume")
