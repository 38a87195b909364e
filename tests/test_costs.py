"""Costs as measurements: the order-statistic interval against a count of coverage by hand, the rounds the family
of verdicts needs, the verdicts, the protocol's rounds (warm-up discarded, order rotated) on fake trainers, the
Pareto front under uncertainty, and --retime on the fixture run."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import cost_stats, report, timing_protocol
from analysis.cost_stats import COST_VERDICTS, interval_rank, median_interval, rounds_needed, summarise

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_run"


def coverage_by_counting(n: int, k: int) -> float:
    """P(x_(k) <= median <= x_(n-k+1)) for n draws of a continuous variable: the number j of draws below the median
    is Binomial(n, 1/2), and the interval covers it exactly when k <= j <= n - k. Counted with math.comb."""
    return sum(math.comb(n, j) for j in range(k, n - k + 1)) / 2 ** n


@pytest.mark.parametrize("n", range(1, 31))
def test_interval_rank_is_the_widest_rank_that_keeps_95_percent(n):
    k = interval_rank(n, 0.95)
    if k == 0:
        assert coverage_by_counting(n, 1) < 0.95  # even [min, max] falls short
    else:
        assert coverage_by_counting(n, k) >= 0.95 and (k == n // 2 or coverage_by_counting(n, k + 1) < 0.95)


def test_the_median_interval_covers_a_skewed_median_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_median = 1.0  # lognormal(0, 0.5): median exp(0) = 1, skewed like machine timings
    hits = [median_interval(rng.lognormal(0.0, 0.5, size=9))[1:] for _ in range(4000)]
    share = np.mean([low <= true_median <= high for low, high in hits])
    assert share >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / 4000)
    assert share == pytest.approx(coverage_by_counting(9, interval_rank(9, 0.95)), abs=0.015)


def test_median_interval_by_hand():
    median, low, high = median_interval([5, 1, 3, 2, 4, 9, 7, 8, 6])  # n = 9: k = 2, coverage 1 - 2 * 10/512
    assert (median, low, high) == (5.0, 2.0, 8.0)
    median, low, high = median_interval([3.0, 1.0, 2.0])  # 3 values cannot make a 95 % interval
    assert median == 2.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in median_interval([]))


def test_rounds_needed_for_a_family_of_verdicts():
    # [min, max] of n ratios covers with 1 - 2/2^n: it must reach 1 - 0.05/m
    assert rounds_needed(1) == 6  # 1 - 2/64 = 0.969
    assert rounds_needed(8) == 9  # 1 - 2/512 = 0.9961 >= 0.99375; 8 rounds give 0.9922
    assert rounds_needed(36) == 11  # the Pareto front's 36 pairs of 9 heads: 1 - 2/2048 >= 1 - 0.05/36
    # one extreme round to spare on each side: [x_(2), x_(n-1)] covers with 1 - 2 (1 + n)/2^n
    assert rounds_needed(1, spare=1) == 9  # 1 - 20/512 = 0.961; 8 rounds give 0.930
    assert rounds_needed(36, spare=1) == 15  # 1 - 32/32768 = 0.99902 >= 0.99861; 14 give 0.99817
    assert coverage_by_counting(15, 2) >= 1 - 0.05 / 36 > coverage_by_counting(14, 2)
    assert timing_protocol.protocol_rounds(["a", "b"]) == 9 and timing_protocol.protocol_rounds(list("abcdefghi")) == 15


def record_of(per_round: dict) -> dict:
    """A costs.json with {head: [head_time per round]}; epoch time = 10 x head time, images/s = 1 / epoch time."""
    rows = [{"round": r, "position": 0, "head": head, "head_time_s": t, "epoch_time_s": 10 * t,
             "images_per_s": 1 / (10 * t)} for head, times in per_round.items() for r, t in enumerate(times)]
    return {"rounds": rows, "configs": dict.fromkeys(per_round), "protocol": {"timed_rounds": 9},
            "device": {"text": "cpu-x"}}


def test_verdicts_follow_the_ratio_interval_not_a_fixed_rule():
    drift = np.array([1.0, 1.3, 0.8, 1.1, 0.9, 1.5, 1.0, 0.7, 1.2])  # the machine's speed, the same for all heads
    record = record_of({"softmax": drift, "dear": 2.0 * drift * np.linspace(0.95, 1.05, 9),
                        "tied": drift * np.array([1.03, 0.98, 1.01, 0.97, 1.02, 0.99, 1.04, 0.96, 1.0]),
                        "cheap": 0.5 * drift})
    rows = summarise(record, "softmax")
    assert rows["dear"]["head_time_ratio_verdict"] == COST_VERDICTS["dearer"]
    assert rows["dear"]["head_time_ratio"] == pytest.approx(2.0)
    assert rows["tied"]["head_time_ratio_verdict"] == COST_VERDICTS["same"]  # a 1-4 % wobble either way
    assert rows["cheap"]["head_time_ratio_verdict"] == COST_VERDICTS["cheaper"]
    # 3 heads compared: each ratio interval at 1 - 0.05/3; with 9 rounds that is [min, max] of the 9 ratios
    tied = np.array([1.03, 0.98, 1.01, 0.97, 1.02, 0.99, 1.04, 0.96, 1.0])
    assert (rows["tied"]["head_time_ratio_ci_low"], rows["tied"]["head_time_ratio_ci_high"]) == pytest.approx(
        (tied.min(), tied.max()))
    # the per-head figures: median over rounds with the 95 % interval (n = 9: 2nd and 8th values)
    assert rows["softmax"]["median_head_time_s"] == 1.0
    assert (rows["softmax"]["median_head_time_s_ci_low"], rows["softmax"]["median_head_time_s_ci_high"]) == (0.8, 1.3)
    assert rows["softmax"]["head_time_ratio_verdict"] == "baseline"


def test_too_few_rounds_give_no_verdict():
    rows = summarise(record_of({"softmax": [1.0, 1.0, 1.0], "dear": [3.0, 3.0, 3.0]}), "softmax")
    assert rows["dear"]["head_time_ratio_verdict"] == COST_VERDICTS["unresolved"]


class FakeTrainer:
    """Records when each head trained; its first epoch is slow (warm-up), later ones take the head's own time."""
    log = []

    def __init__(self, cfg, splits):
        self.cfg, self.epochs, self.device, self.head = cfg, 0, __import__("torch").device("cpu"), FakeHead()

    def train_epoch(self):
        self.epochs += 1
        FakeTrainer.log.append(self.cfg)
        seconds = 100.0 if self.epochs == 1 else {"softmax": 1.0, "b": 2.0, "c": 3.0}[self.cfg]
        return {"epoch_time_s": seconds, "head_time_s": seconds / 10, "images_per_s": 1 / seconds}


class FakeHead:
    def parameters(self):
        return []


def test_a_round_lasts_at_least_min_round_seconds_per_head(monkeypatch):
    class Quick(FakeTrainer):
        def train_epoch(self):
            self.epochs += 1
            return {"epoch_time_s": 0.1, "head_time_s": 0.01, "images_per_s": 10.0}

    monkeypatch.setattr(timing_protocol, "as_json", lambda cfg: cfg)
    record = timing_protocol.measure({"softmax": "softmax"}, None, rounds=6, log=lambda *a: None, make_trainer=Quick)
    assert record["protocol"]["epochs_per_round"] == {"softmax": 5}  # 0.5 s / 0.1 s per epoch


def test_the_protocol_discards_a_warm_up_round_and_rotates_the_order(monkeypatch):
    FakeTrainer.log = []
    monkeypatch.setattr(timing_protocol, "as_json", lambda cfg: cfg)
    configs = {"softmax": "softmax", "b": "b", "c": "c"}
    rounds = timing_protocol.protocol_rounds(configs)
    assert rounds == 11  # 3 pairs, one round to spare: [x_(2), x_(10)] of 11 covers 1 - 24/2048 >= 1 - 0.05/3
    record = timing_protocol.measure(configs, None, rounds=rounds, log=lambda *a: None, make_trainer=FakeTrainer)
    assert FakeTrainer.log[:3] == ["softmax", "b", "c"]  # the warm-up round, one epoch each
    # its 100 s epochs exceed MIN_ROUND_SECONDS: one epoch per head per round
    orders = [FakeTrainer.log[3 + 3 * r: 6 + 3 * r] for r in range(rounds)]
    assert orders[:3] == [["softmax", "b", "c"], ["b", "c", "softmax"], ["c", "softmax", "b"]]
    for position in range(3):  # over as many rounds as heads, each head takes each place once
        assert sorted(order[position] for order in orders[:3]) == ["b", "c", "softmax"]
    assert len(record["rounds"]) == 33 and all(r["epoch_time_s"] < 100 for r in record["rounds"])  # warm-up gone
    rows = summarise(record, "softmax")
    assert rows["b"]["epoch_time_ratio"] == 2.0 and rows["c"]["epoch_time_ratio_verdict"] == COST_VERDICTS["dearer"]


def front(accuracies, more_accurate, dearer):
    summary = pd.DataFrame({"head": list(accuracies), "accuracy": list(accuracies.values()),
                            "median_epoch_time_s": 1.0, "informative": True})
    return report.pareto_heads(summary, more_accurate, dearer)


def test_two_heads_tied_on_cost_never_put_the_less_accurate_one_on_the_front():
    # taylor is 1.5 % faster by its median, but the cost intervals do not resolve it; softmax is more accurate
    assert front({"softmax": 0.33, "taylor": 0.28}, {("softmax", "taylor"): True}, {}) == ["softmax"]


def test_a_dearer_head_of_tied_accuracy_is_off_and_unresolved_pairs_remove_no_head():
    assert front({"softmax": 0.33, "entmax": 0.33}, {}, {("entmax", "softmax"): True}) == ["softmax"]
    assert front({"softmax": 0.33, "gumbel": 0.328}, {}, {}) == ["softmax", "gumbel"]
    # a trade-off: more accurate but dearer keeps both on the front
    assert front({"a": 0.35, "b": 0.30}, {("a", "b"): True}, {("a", "b"): True}) == ["a", "b"]


def test_pairwise_dearer_uses_every_pair_at_a_family_wise_level():
    drift = np.linspace(0.8, 1.2, 11)
    record = record_of({"softmax": drift, "b": 2 * drift, "c": 2.01 * drift})
    dearer = cost_stats.pairwise_dearer(record, ["softmax", "b", "c"], figure="head_time_s")
    assert dearer[("b", "softmax")] and dearer[("c", "softmax")] and not dearer[("softmax", "b")]
    assert dearer[("c", "b")]  # 2.01/2 in all 11 rounds: [min, max] excludes 1
    noisy = record_of({"softmax": drift, "b": drift * np.where(np.arange(11) % 2, 1.1, 0.95)})
    assert not any(cost_stats.pairwise_dearer(noisy, ["softmax", "b"], figure="head_time_s").values())


def test_retime_measures_the_costs_again_without_training_a_final_model(tmp_path, fixture_run_data_dir,
                                                                          monkeypatch):
    from analysis import retrain
    from analysis.run import analyse

    run_dir = tmp_path / "tiny_run"
    shutil.copytree(FIXTURE, run_dir)
    spec = json.loads((run_dir / "study.json").read_text())
    spec["train"]["data"]["data_dir"] = str(fixture_run_data_dir)
    (run_dir / "study.json").write_text(json.dumps(spec))

    def refuse(*args, **kwargs):
        raise AssertionError("a final model was trained")

    monkeypatch.setattr(retrain, "train_final", refuse)
    costs = run_dir / "analysis" / "predictions" / "costs.json"
    before = json.loads(costs.read_text())
    analyse(run_dir, log=lambda *a: None)  # saved costs match: reused
    assert json.loads(costs.read_text()) == before
    analyse(run_dir, log=lambda *a: None, retime=True)
    after = json.loads(costs.read_text())
    assert after["measured_at"] != before["measured_at"] or after["rounds"] != before["rounds"]
    assert after["protocol"]["timed_rounds"] == 9 and len(after["rounds"]) == 18
    summary = pd.read_csv(run_dir / "analysis" / "summary.csv").set_index("head")
    for column in ("head_time_ratio", "head_time_ratio_ci_low", "head_time_ratio_ci_high", "epoch_time_ratio",
                   "epoch_time_ratio_ci_low", "epoch_time_ratio_ci_high", "median_epoch_time_s_ci_low"):
        assert np.isfinite(summary.loc["hierarchical", column]), column
    assert "core(s) usable" in summary.loc["softmax", "cost_device"]
    text = (run_dir / "analysis" / "summary.md").read_text()
    assert "interleaved rounds after a warm-up round" in text and "--retime" in text


def test_the_protocol_puts_torchs_threads_back_for_the_next_task(monkeypatch):
    """The protocol runs with a thread per core; a Ray worker that ran it goes on to run final models or check runs,
    which must not inherit its count (two 2-thread runs side by side on 2 cores oversubscribe them)."""
    import torch

    seen = []

    class Counting(FakeTrainer):
        def train_epoch(self):
            seen.append(torch.get_num_threads())
            return super().train_epoch()

    FakeTrainer.log = []
    monkeypatch.setattr(timing_protocol, "as_json", lambda cfg: cfg)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    timing_protocol.measure({"softmax": "softmax"}, None, rounds=6, threads=other, log=lambda *a: None,
                            make_trainer=Counting)
    assert set(seen) == {other} and torch.get_num_threads() == before


def test_final_models_and_check_runs_train_with_their_tasks_threads(monkeypatch):
    """Each final model and check run sets torch's threads to the CPUs its task reserved, and puts them back."""
    import torch

    from analysis import convergence, retrain
    from study import trainer as trainer_module

    seen = []

    class Stop(Exception):
        pass

    def fake_trainer(cfg, splits):
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(trainer_module, "Trainer", fake_trainer)
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    config = {"data": {}, "model": {}, "optim": {}, "run": {"device": "cpu"}, "frozen": {}}
    for run in (retrain.train_final, convergence.train_on_tuning_split):
        with pytest.raises(Stop):
            run(config, None, other)
        assert torch.get_num_threads() == before
    assert seen == [other, other]
    assert retrain.task_threads({"num_gpus": 0, "num_cpus": 2}) == 2
    assert retrain.task_threads({"num_gpus": 0.25}) == 1
