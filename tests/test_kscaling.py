"""The K-scaling sweep (study/bench/kscaling.py) and its table (analysis/kscaling.py)."""
from pathlib import Path

from study.bench.kscaling import SWEEP, left_out, tune_arguments
from study.search.from_args import spec_from_args
from study.tune import build_parser as tune_parser


def test_the_sweep_states_one_budget_per_k_with_at_least_three_final_models():
    assert sorted(SWEEP) == [100, 1_000, 10_000]
    assert SWEEP[100].train_per_class == SWEEP[1_000].train_per_class  # the same examples per class ...
    assert SWEEP[10_000].train_per_class * 10_000 == SWEEP[1_000].train_per_class * 1_000  # ... but at 10,000
    assert all(point.searches >= 3 for point in SWEEP.values())  # one final seed per search (the frozen preset)


def test_a_head_slower_than_the_budget_is_left_out_with_its_measured_time():
    point = SWEEP[10_000]
    measured = {"softmax": {"epoch_time_s": point.max_epoch_s * 0.5, "train_rows": 18_000},
                "entmax": {"epoch_time_s": point.max_epoch_s * 7, "train_rows": 18_000}}
    out = left_out(point, measured)
    assert list(out) == ["entmax"]
    assert f"{point.max_epoch_s * 7:.1f} s a trial epoch" in out["entmax"] and "18000 rows" in out["entmax"]


def test_the_study_command_is_a_valid_tune_command_with_the_stated_budget(tmp_path):
    from study.synthetic import generate, save_arrays

    point = SWEEP[100]
    data = tmp_path / "k100.npz"
    save_arrays(data, compressed=True, **generate(100, train=2_000, test=1_000))
    argv = tune_arguments(point, data, tmp_path, ["softmax", "adaptive"], resume=False)
    spec, run = spec_from_args(tune_parser().parse_args(argv), argv, gpu_visible=False)
    assert list(spec.heads) == ["softmax", "adaptive"] and spec.searches == point.searches
    assert spec.trials_per_search == point.trials_per_search and spec.train.optim.epochs == point.epochs
    assert spec.final_seeds == 1 and run.path == Path(tmp_path) / point.name
    assert tune_arguments(point, data, tmp_path, [], resume=True)[:3] == ["--resume", "--name", point.name]
