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
    # the preset's summary names its own sizes; the line the run prints and records says which it replaces
    assert spec.preset_reason.endswith(f"; replaced by the command line: --searches {point.searches}, --num-samples "
                                       f"{point.searches * point.trials_per_search}, --epochs {point.epochs}")
    assert tune_arguments(point, data, tmp_path, [], resume=True)[:3] == ["--resume", "--name", point.name]


SUMMARY_COLUMNS = ["head", "accuracy", "accuracy_ci95", "informative", "budget_limited", "median_head_time_s",
                   "median_head_time_s_ci_low", "median_head_time_s_ci_high", "head_time_ratio",
                   "head_time_ratio_ci_low", "head_time_ratio_ci_high", "head_time_ratio_verdict", "cost_device"]


def write_point(folder: Path, classes: int, heads: dict, left_out=None) -> Path:
    """A finished K-scaling run as the study and its analysis leave it: heads {name: (accuracy, verdict against
    softmax, head time ratio, its cost verdict)}."""
    import csv
    import json

    from study.bench.kscaling import SWEEP
    from dataclasses import asdict

    run = folder / f"kscaling-k{classes}"
    (run / "analysis").mkdir(parents=True)
    with open(run / "analysis" / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for head, (accuracy, _, ratio, cost) in heads.items():
            writer.writerow({"head": head, "accuracy": accuracy, "accuracy_ci95": 0.01, "informative": True,
                             "budget_limited": head == "taylor", "median_head_time_s": 0.1 * ratio,
                             "median_head_time_s_ci_low": 0.09 * ratio, "median_head_time_s_ci_high": 0.11 * ratio,
                             "head_time_ratio": ratio, "head_time_ratio_ci_low": ratio * 0.9,
                             "head_time_ratio_ci_high": ratio * 1.1, "head_time_ratio_verdict": cost,
                             "cost_device": "a CPU"})
    with open(run / "analysis" / "comparisons.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["head", "baseline", "verdict", "accuracy_diff", "diff_ci_low",
                                               "diff_ci_high"])
        writer.writeheader()
        for head, (accuracy, verdict, _, _) in heads.items():
            if head != "softmax":
                diff = accuracy - heads["softmax"][0]
                writer.writerow({"head": head, "baseline": "softmax", "verdict": verdict, "accuracy_diff": diff,
                                 "diff_ci_low": diff - 0.02, "diff_ci_high": diff + 0.02})
    probes = {head: {"peak_rss_mb": 700.0 + i, "epoch_time_s": 0.1, "train_rows": 10} for i, head in
              enumerate([*heads, *(left_out or {})])}
    from study.synthetic import generate, save_arrays

    data = folder / f"k{classes}.npz"
    save_arrays(data, compressed=True, **generate(classes, train=2 * classes, test=2 * classes, zipf=1.0))
    (run / "kscaling.json").write_text(json.dumps({"budget": asdict(SWEEP[classes]), "left_out": left_out or {},
                                                   "probes": probes, "data": str(data)}))
    return run


def test_the_table_gives_each_head_its_crossover_k_by_cost_and_accuracy_verdicts(tmp_path):
    from analysis import kscaling

    same, worse, better = "not distinguishable", "worse than softmax", "better than softmax"
    small = write_point(tmp_path, 100, {"softmax": (0.5, None, 1.0, ""),
                                        "adaptive": (0.5, same, 1.8, "dearer"),
                                        "sampled": (0.4, worse, 0.5, "cheaper"),
                                        "hierarchical": (0.5, same, 2.0, "dearer"),
                                        "taylor": (0.5, same, 0.8, "cheaper")})
    large = write_point(tmp_path, 1_000, {"softmax": (0.3, None, 1.0, ""),
                                          "adaptive": (0.3, same, 0.6, "cheaper"),
                                          "sampled": (0.35, better, 0.4, "cheaper"),
                                          "hierarchical": (0.3, same, 0.7, "not distinguishable")},
                        left_out={"taylor": "9.0 s a trial epoch, above this K's 5 s"})
    out = tmp_path / "table"
    kscaling.main([str(large), str(small), "--out", str(out)])
    text = (out / "kscaling.md").read_text()
    crossovers = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in text.splitlines()
                  if line.startswith("| ") and line.count("|") == 5 and "crossover" not in line}
    assert {head: cells[0] for head, cells in crossovers.items()} == {
        "adaptive": "1,000",  # dearer at 100, cheaper and not distinguishable at 1,000
        "sampled": "1,000",  # cheaper at 100 but worse; at 1,000 cheaper and better
        "hierarchical": "none up to 1,000",  # never cheaper beyond its interval
        "taylor": "100",  # cheaper and not worse at 100 (left out at 1,000)
    }
    assert crossovers["sampled"][1:] == ["+5.00 [+3.00, +7.00]", "0.40 [0.36, 0.44] |"]
    assert "| 1,000 | taylor | — | left out: 9.0 s a trial epoch, above this K's 5 s |" in text
    assert "| 100 | taylor | 50.0% ± 1.0% (budget-limited) | not distinguishable |" in text
    assert "| 1,000 | adaptive | 30.0% ± 1.0% | not distinguishable | 60.0 (54.0–66.0) | 0.60 (0.54–0.66) | " \
           "cheaper | 701 |" in text
    assert text.index("| 100 | softmax |") < text.index("| 100 | adaptive |") < text.index("| 1,000 | softmax |")
    assert "K = 1,000: 20,000 training rows (20 a class on average)" in text
    import numpy as np

    with np.load(tmp_path / "k1000.npz") as arrays:  # the reference: counted here, not by the module
        train, test = arrays["train_labels"], arrays["test_labels"]
    top = max(set(train.tolist()), key=train.tolist().count)
    assert f"Always answering the most frequent class scores {np.mean(test == top):.1%} of the test rows" in text
    assert (out / "kscaling.png").stat().st_size > 10_000
    assert len((out / "kscaling.csv").read_text().splitlines()) == 1 + 5 + 4 + 1


def test_a_mean_or_ratio_without_an_interval_is_shown_without_one(tmp_path):
    """One usable final model has no interval (NaN in summary.csv), nor has a ratio from too few timing rounds."""
    import csv

    from analysis import kscaling

    run = write_point(tmp_path, 100, {"softmax": (0.5, None, 1.0, ""), "adaptive": (0.4, "not tested", 0.8, "x")})
    summary = run / "analysis" / "summary.csv"
    rows = list(csv.DictReader(open(summary)))
    rows[1].update(accuracy_ci95="nan", head_time_ratio_ci_low="nan", head_time_ratio_ci_high="nan")
    with open(summary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    kscaling.main([str(run), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "kscaling.md").read_text()
    assert "| 100 | adaptive | 40.0% ± no interval | not tested | " in text and "0.80 (—–—)" in text
    assert (tmp_path / "out" / "kscaling.png").is_file()


def test_two_runs_of_the_same_k_are_refused(tmp_path, cli_error):
    from analysis import kscaling
    from conftest import assert_one_line_error

    first = write_point(tmp_path / "a", 100, {"softmax": (0.5, None, 1.0, "")})
    second = write_point(tmp_path / "b", 100, {"softmax": (0.5, None, 1.0, "")})
    code, stderr = cli_error(kscaling.main, str(first), str(second), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, stderr, "two run directories are of the same K (100, 100); give one per K")
    assert not (tmp_path / "out").exists()


def test_a_run_or_data_made_under_another_budget_is_refused_not_resumed(tmp_path):
    import json

    import pytest

    from study.bench.kscaling import check_data, check_run
    from study.errors import StudyError
    from study.synthetic import generate, save_arrays

    point = SWEEP[100]
    data = tmp_path / "k100.npz"
    save_arrays(data, compressed=True, **generate(100, train=point.train_per_class * 100 + 1,
                                                 test=point.test_per_class * 100))
    with pytest.raises(StudyError, match="not this K's 2000 and 1000; delete it"):
        check_data(data, point)
    run = tmp_path / point.name
    run.mkdir()
    spec = {"searches": point.searches, "num_samples": point.searches * point.trials_per_search,
            "train": {"optim": {"epochs": point.epochs}}, "heads": ["softmax", "adaptive"]}
    (run / "study.json").write_text(json.dumps(spec))
    check_run(run, point, ["softmax", "adaptive"])  # the same budget: resumed
    (run / "study.json").write_text(json.dumps({**spec, "searches": point.searches + 1}))
    with pytest.raises(StudyError, match="delete it \\(or give another --storage\\)"):
        check_run(run, point, ["softmax", "adaptive"])


def test_damaged_files_of_an_earlier_start_are_one_line(tmp_path, cli_error):
    """The sweep's own kept files, damaged from outside: one line naming the file and what to do, exit 2."""
    from conftest import assert_one_line_error
    from study.bench import kscaling

    folder = tmp_path / "kscaling-data"
    folder.mkdir()
    (folder / "k100.npz").write_bytes(b"not a zip")
    code, stderr = cli_error(kscaling.main, "--classes", "100", "--storage", str(tmp_path))
    assert_one_line_error(code, stderr, "k100.npz does not read as this sweep's data")
    (folder / "k100.npz").unlink()
    from study.synthetic import generate, save_arrays

    point = SWEEP[100]
    save_arrays(folder / "k100.npz", compressed=True, **generate(100, train=point.train_per_class * 100,
                                                                test=point.test_per_class * 100))
    (folder / "k100.probes.json").write_text('{"softmax": ')
    code, stderr = cli_error(kscaling.main, "--classes", "100", "--storage", str(tmp_path))
    assert_one_line_error(code, stderr, "k100.probes.json is damaged (not valid JSON); delete it")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "kscaling-data").write_text("a file where the data folder goes")
    code, stderr = cli_error(kscaling.main, "--classes", "100", "--storage", str(blocked))
    assert_one_line_error(code, stderr, "cannot make")


def test_a_data_path_recorded_relative_to_another_folder_is_found_beside_the_run_or_said_missing(tmp_path):
    import json

    from analysis import kscaling

    run = write_point(tmp_path, 100, {"softmax": (0.5, None, 1.0, "")})
    record = json.loads((run / "kscaling.json").read_text())
    (tmp_path / "kscaling-data").mkdir()
    (tmp_path / "k100.npz").rename(tmp_path / "kscaling-data" / "k100.npz")  # where the sweep puts it
    (run / "kscaling.json").write_text(json.dumps({**record, "data": "nowhere-else/k100.npz"}))
    kscaling.main([str(run), "--out", str(tmp_path / "out")])
    assert "Always answering the most frequent class scores" in (tmp_path / "out" / "kscaling.md").read_text()
    (tmp_path / "kscaling-data" / "k100.npz").unlink()
    kscaling.main([str(run), "--out", str(tmp_path / "out")])
    assert "Its data file was not found" in (tmp_path / "out" / "kscaling.md").read_text()
