"""The convergence check and accuracy against time (analysis/convergence_stats.py, analysis/convergence.py),
against hand-made curves whose answers are worked out here."""
import math

import numpy as np
import pytest
from scipy import stats

from analysis import convergence
from analysis.convergence_stats import convergence_verdicts
from analysis.convergence_stats import bootstrap_times, first_reaching, time_to, time_to_accuracy


def pairs_of(short, long):
    return list(zip(short, long))


def test_a_curve_still_rising_is_budget_limited():
    # Three seeds gain 4 points when the epochs double (differences 0.04, 0.05, 0.03); seeds differ by 1 point.
    found = convergence_verdicts({"softmax": pairs_of([0.30, 0.31, 0.29], [0.34, 0.36, 0.32])},
                                 {"softmax": 0.01})["softmax"]
    reference = stats.ttest_1samp([0.04, 0.05, 0.03], 0.0, alternative="greater")  # one head: its own SD
    assert found["convergence_gain"] == pytest.approx(0.04)
    assert found["convergence_gain_se"] == pytest.approx(0.01 / math.sqrt(3))
    assert found["convergence_p"] == pytest.approx(reference.pvalue) and found["convergence_p_holm"] == found[
        "convergence_p"]
    assert found["convergence_noise"] == 0.01 and found["budget_limited"] is True


def test_a_flat_curve_is_not_budget_limited():
    found = convergence_verdicts({"softmax": pairs_of([0.30, 0.32, 0.28], [0.305, 0.315, 0.29])},
                                 {"softmax": 0.02})["softmax"]
    assert found["convergence_gain"] == pytest.approx(0.01 / 3) and found["budget_limited"] is False


def test_the_pairs_spread_is_pooled_over_the_heads_as_a_pooled_two_sample_t_test_pools_it():
    # Two heads' differences: scipy's equal-variance two-sample t-test pools the same SD; recover it from its t.
    a, b = np.array([0.010, 0.030, 0.020, 0.040]), np.array([0.002, -0.004])
    pairs = {"a": pairs_of([0.3] * 4, 0.3 + a), "b": pairs_of([0.3] * 2, 0.3 + b)}
    found = convergence_verdicts(pairs, {"a": 0.001, "b": 0.001})
    two_sample = stats.ttest_ind(a, b, equal_var=True)
    pooled = (a.mean() - b.mean()) / (two_sample.statistic * math.sqrt(1 / 4 + 1 / 2))
    assert found["a"]["convergence_gain_se"] == pytest.approx(pooled / 2)
    assert found["b"]["convergence_gain_se"] == pytest.approx(pooled / math.sqrt(2))
    assert found["a"]["convergence_p"] == pytest.approx(stats.t.sf(a.mean() / (pooled / 2), df=4))
    # Holm over the two heads: the smaller p doubled, the larger kept (no smaller than the first's adjusted).
    p_a, p_b = found["a"]["convergence_p"], found["b"]["convergence_p"]
    assert p_a < p_b and found["a"]["convergence_p_holm"] == pytest.approx(min(1, 2 * p_a))
    assert found["b"]["convergence_p_holm"] == pytest.approx(max(min(1, 2 * p_a), p_b))
    assert found["a"]["budget_limited"] is True and found["b"]["budget_limited"] is False


def test_a_gain_above_the_noise_within_its_own_error_is_not_flagged():
    """The 40-epoch default's naive softmax: gain +0.12 points from differences +0.50 and -0.26, against a noise of
    0.05 from four final models. The old rule (gain > noise) flagged it; its gain is well within its error."""
    found = convergence_verdicts({"naive_softmax": pairs_of([0.3256, 0.3238], [0.3306, 0.3212])},
                                 {"naive_softmax": 0.0005})["naive_softmax"]
    assert found["convergence_gain"] == pytest.approx(0.0012)
    assert found["convergence_gain"] > found["convergence_noise"]
    assert found["convergence_p"] > 0.3 and found["budget_limited"] is False


def test_a_real_gain_within_the_noise_is_not_flagged_and_holm_counts_every_head():
    # Gains of 2 points, nearly noiseless (certain), but the heads' run-to-run noise is 3 points: within noise.
    rising = {f"h{i}": pairs_of([0.30, 0.31], [0.32, 0.3301]) for i in range(3)}
    found = convergence_verdicts(rising, dict.fromkeys(rising, 0.03))
    assert all(f["convergence_p_holm"] < 0.001 and f["budget_limited"] is False for f in found.values())
    # Ten heads whose differences all have an SD of 0.2 points (pooled: 20 degrees of freedom). One gains 0.254
    # points (t = 2.2, one-sided p about 0.02); nine gain nothing. Holm multiplies the smallest p by ten: not flagged.
    rising = {"h": pairs_of([0.30] * 3, [0.30454, 0.30254, 0.30054])}
    flat = {f"flat{i}": pairs_of([0.30] * 3, [0.302, 0.298, 0.300]) for i in range(9)}
    found = convergence_verdicts({**rising, **flat}, dict.fromkeys([*rising, *flat], 0.001))["h"]
    assert found["convergence_p"] == pytest.approx(stats.t.sf(2.2, df=20), rel=1e-3)
    assert found["convergence_p"] < 0.05 and found["convergence_p_holm"] == pytest.approx(10 * found["convergence_p"])
    assert found["convergence_gain"] > found["convergence_noise"] and found["budget_limited"] is False


def test_pairs_that_agree_exactly_make_a_certain_gain_or_none():
    # Binary-exact accuracies: every difference is exactly 0.25 (or 0): no spread, so the gain has no error.
    found = convergence_verdicts({"up": [(0.25, 0.5), (0.5, 0.75)], "flat": [(0.25, 0.25), (0.5, 0.5)]},
                                 {"up": 0.125, "flat": 0.125})
    assert found["up"]["convergence_gain_se"] == 0 and found["up"]["convergence_p"] == 0
    assert found["up"]["budget_limited"] is True
    assert found["flat"]["convergence_p"] == 1 and found["flat"]["budget_limited"] is False


def test_without_a_noise_or_a_second_pair_nothing_is_flagged():
    unknown_noise = convergence_verdicts({"h": pairs_of([0.30, 0.31], [0.40, 0.41])}, {"h": float("nan")})["h"]
    assert unknown_noise["convergence_gain"] == pytest.approx(0.10) and unknown_noise["budget_limited"] is None
    one_pair = convergence_verdicts({"h": [(0.30, 0.40)]}, {"h": 0.01})["h"]
    assert math.isnan(one_pair["convergence_p"]) and one_pair["budget_limited"] is None
    nothing = convergence_verdicts({"h": []}, {"h": 0.01})["h"]
    assert math.isnan(nothing["convergence_gain"]) and nothing["budget_limited"] is None


def test_time_to_a_target_is_the_end_of_the_first_epoch_that_reaches_it():
    curve = [0.10, 0.20, 0.30, 0.40]
    assert first_reaching(curve, 0.25) == 3 and first_reaching(curve, 0.10) == 1 and first_reaching(curve, 0.5) is None
    # Two seeds whose mean is 0.15, 0.25, 0.35: 0.25 is first reached at the end of epoch 2, at 2 x 1.5 s.
    curves = [[0.10, 0.20, 0.30], [0.20, 0.30, 0.40]]
    assert time_to(curves, 1.5, 0.25) == pytest.approx(3.0)
    assert time_to(curves, 1.5, 0.36) == math.inf


def test_time_to_accuracy_of_a_noiseless_head_has_a_point_interval():
    # Identical seeds and rounds: every resample gives the same answer. Target 0.9 x 0.5 = 0.45, reached at epoch 3.
    curves = [[0.2, 0.4, 0.46, 0.5]] * 3
    found = time_to_accuracy(curves, [2.0] * 6, [0.5, 0.5], 0.9)
    assert found == {"estimate": pytest.approx(6.0), "ci_low": pytest.approx(6.0), "ci_high": pytest.approx(6.0)}


def test_time_to_accuracy_interval_reflects_seed_and_round_noise():
    rng = np.random.default_rng(1)
    curves = np.clip(np.linspace(0.1, 0.5, 10)[None, :] + rng.normal(0, 0.03, size=(5, 10)), 0, 1)
    rounds = 1.0 + rng.normal(0, 0.05, size=15)
    found = time_to_accuracy(curves, rounds, [0.5, 0.49, 0.51], 0.9)
    assert found["ci_low"] <= found["estimate"] <= found["ci_high"]
    assert found["ci_low"] < found["ci_high"]  # the noise shows
    never = time_to_accuracy(curves, rounds, [0.9, 0.9], 0.99)
    assert never == {"estimate": math.inf, "ci_low": math.inf, "ci_high": math.inf}


def test_the_vectorised_bootstrap_is_time_to_on_each_resample():
    """Each resample, redrawn here with the same generator in the same order, timed by the plain `time_to`."""
    rng = np.random.default_rng(3)
    curves = np.clip(np.linspace(0.1, 0.5, 8)[None, :] + rng.normal(0, 0.04, size=(4, 8)), 0, 1)
    rounds, baseline = 1.0 + rng.normal(0, 0.1, size=7), np.array([0.5, 0.47, 0.52])
    draws = bootstrap_times(curves, rounds, baseline, 0.95, np.random.default_rng(11), 300)
    again = np.random.default_rng(11)
    seeds, picks = again.integers(4, size=(300, 4)), again.integers(7, size=(300, 7))
    targets = again.integers(3, size=(300, 3))
    expected = [time_to(curves[seeds[b]], float(np.median(rounds[picks[b]])), 0.95 * baseline[targets[b]].mean())
                for b in range(300)]
    assert np.isinf(expected).any() and np.isfinite(expected).any()  # both outcomes occur among the resamples
    np.testing.assert_allclose(draws, expected)


def fake_records(finals: dict, epochs: int = 4, rows: int = 45000) -> dict:
    """{(head, seed, factor): record} whose curves rise linearly to the given final accuracy."""
    records = {}
    for (head, factor), per_seed in finals.items():
        for seed, final in enumerate(per_seed, 1):
            length = epochs * factor
            history = [{"epoch": e, "val_acc": final * e / length, "diverged": False} for e in range(1, length + 1)]
            records[(head, seed, factor)] = {"history": history, "train_rows": rows}
    return records


def test_check_frame_flags_the_rising_head_and_times_both():
    records = fake_records({("softmax", 1): [0.30, 0.31, 0.29], ("softmax", 2): [0.305, 0.31, 0.295],
                            ("sampled", 1): [0.25, 0.26, 0.24], ("sampled", 2): [0.30, 0.31, 0.29]})
    # Both heads process 50,000 images/s in every round: a 45,000-row epoch takes 0.9 s.
    costs = {"rounds": [{"head": h, "round": r, "images_per_s": 50000.0} for h in ("softmax", "sampled")
                        for r in range(6)]}
    # Final models' spread 0.01 for both: sampled gains 0.05 (flagged), softmax 0.005 (not).
    frame = convergence.check_frame(records, ["softmax", "sampled"], costs, {"softmax": 0.01, "sampled": 0.01})
    frame = frame.set_index("head")
    assert frame.loc["sampled", "budget_limited"] and not frame.loc["softmax", "budget_limited"]
    assert frame.loc["sampled", "convergence_gain"] == pytest.approx(0.05)
    assert frame.loc["sampled", "convergence_noise"] == 0.01 and frame.loc["sampled", "convergence_pairs"] == 3
    # The same gain against a spread of 0.06: within noise. Without a spread (one final model): not judged.
    wide = convergence.check_frame(records, ["sampled"], costs, {"sampled": 0.06}).set_index("head")
    assert not wide.loc["sampled", "budget_limited"]
    unknown = convergence.check_frame(records, ["sampled"], costs, {}).set_index("head")
    assert unknown.loc["sampled", "budget_limited"] is None
    # softmax's converged accuracy 0.30; 90 % of it, 0.27: its own 2x curve (0.30 * e / 8) reaches it at e = 8
    # (0.2625 at 7), sampled's (0.30 * e / 8 too) also at 8: 8 x 0.9 s.
    assert frame.loc["softmax", "time_to_90_s"] == pytest.approx(7.2)
    assert frame.loc["sampled", "time_to_90_s"] == pytest.approx(7.2)
    assert frame.loc["softmax", "time_to_99_s"] == pytest.approx(7.2)


def test_check_frame_pairs_runs_by_seed_and_judges_only_the_heads_it_is_given():
    # sampled's seed 2 diverged at 2x (its history stops early): its pair is left out, the other two kept. taylor
    # (near chance, say) is not judged: no verdict, and its pairs are not pooled with the others'.
    records = fake_records({("softmax", 1): [0.30, 0.31, 0.29], ("softmax", 2): [0.31, 0.31, 0.30],
                            ("sampled", 1): [0.25, 0.26, 0.24], ("sampled", 2): [0.30, 0.33, 0.28],
                            ("taylor", 1): [0.02, 0.02, 0.02], ("taylor", 2): [0.09, 0.02, 0.02]})
    for key, record in records.items():
        record["config"] = {"optim": {"epochs": 4 * key[2]}}
    records[("sampled", 2, 2)]["history"] = records[("sampled", 2, 2)]["history"][:5]
    assert convergence.final_pairs(records, "sampled") == [(0.25, 0.30), (0.24, 0.28)]
    frame = convergence.check_frame(records, ["softmax", "sampled", "taylor"], None,
                                    {"softmax": 0.01, "sampled": 0.01, "taylor": 0.001},
                                    judged=["softmax", "sampled"]).set_index("head")
    assert frame.loc["sampled", "convergence_pairs"] == 2 and frame.loc["taylor", "budget_limited"] is None
    assert math.isnan(frame.loc["taylor", "convergence_gain"])
    # Differences: softmax 0.01, 0, 0.01; sampled 0.05, 0.04 -> pooled SD over 3 degrees of freedom.
    pooled = math.sqrt((2 * (0.01 / 3) ** 2 + (0.02 / 3) ** 2 + 2 * 0.005 ** 2) / 3)
    assert frame.loc["sampled", "convergence_gain"] == pytest.approx(0.045)
    assert frame.loc["sampled", "convergence_gain_se"] == pytest.approx(pooled / math.sqrt(2))
    assert frame.loc["sampled", "budget_limited"] and not frame.loc["softmax", "budget_limited"]


def test_a_final_model_with_its_validation_accuracy_is_its_pairs_1x_run():
    """A final model of format 5 (trained on the tuning split, scored once on validation) replaces its pair's 1x
    run: no 1x job is made for it, and the check reads its accuracy as the 1x run's. One of older code (no
    validation accuracy) still gets a 1x run of the check's own."""
    from analysis.retrain import Job
    from study.config import OptimConfig, TrainConfig

    config = TrainConfig(optim=OptimConfig(epochs=4)).replace(**{"data.final": True})
    finals = [Job("softmax", 1, config), Job("softmax", 2, config)]
    history = [{"epoch": e, "train_loss": 1.0 / e, "diverged": False} for e in range(1, 5)]
    final_records = {("softmax", 1): {"format": 5, "config": {"optim": {"epochs": 4}}, "history": history,
                                      "val_acc": 0.31, "val_loss": 2.5, "train_rows": 45000},
                     ("softmax", 2): {"format": 4, "config": {"optim": {"epochs": 4}}, "history": history}}
    jobs = convergence.check_jobs(finals, final_records)
    assert [(j.seed, j.factor, j.config.optim.epochs, j.config.data.final) for j in jobs] == [
        (2, 1, 4, False), (1, 2, 8, False), (2, 2, 8, False)]
    first = convergence.first_runs_of_final_models(final_records)
    assert list(first) == [("softmax", 1, 1)] and first[("softmax", 1, 1)]["history"][-1]["val_acc"] == 0.31
    records = {**first, ("softmax", 2, 1): {"config": {"optim": {"epochs": 4}},
                                            "history": [{"val_acc": 0.2 + 0.02 * e} for e in range(1, 5)]}}
    for seed, final in ((1, 0.33), (2, 0.30)):
        records[("softmax", seed, 2)] = {"config": {"optim": {"epochs": 8}}, "train_rows": 45000,
                                         "history": [{"val_acc": final * e / 8} for e in range(1, 9)]}
    assert convergence.final_pairs(records, "softmax") == [(0.31, 0.33), (pytest.approx(0.28), 0.30)]
    frame = convergence.check_frame(records, ["softmax"], None, {"softmax": 0.01}).set_index("head")
    assert frame.loc["softmax", "val_acc_1x"] == pytest.approx((0.31 + 0.28) / 2)
    assert frame.loc["softmax", "convergence_gain"] == pytest.approx(0.02)


def test_a_diverged_final_model_drops_its_pair_and_one_without_history_gets_its_own_1x_run():
    """A final model that diverged (its history stops early and says so) is still its pair's 1x run: no 1x job,
    and its pair is left out, as a diverged 1x run of the check's own would be. A record without a history cannot
    be a 1x run: the check trains one."""
    from analysis.retrain import Job
    from study.config import OptimConfig, TrainConfig

    config = TrainConfig(optim=OptimConfig(epochs=4)).replace(**{"data.final": True})
    diverged = [{"epoch": 1, "train_loss": 2.0, "diverged": False}, {"epoch": 2, "train_loss": float("nan"),
                                                                     "diverged": True}]
    final_records = {("softmax", 1): {"format": 5, "config": {"optim": {"epochs": 4}}, "history": diverged,
                                      "val_acc": 0.01},
                     ("softmax", 2): {"format": 5, "config": {"optim": {"epochs": 4}}, "history": [],
                                      "val_acc": 0.3}}
    jobs = convergence.check_jobs([Job("softmax", 1, config), Job("softmax", 2, config)], final_records)
    assert [(j.seed, j.factor) for j in jobs] == [(2, 1), (1, 2), (2, 2)]
    records = convergence.first_runs_of_final_models(final_records)
    for seed in (1, 2):
        records[("softmax", seed, 2)] = {"config": {"optim": {"epochs": 8}},
                                         "history": [{"val_acc": 0.3} for _ in range(8)]}
    assert convergence.final_accuracies(records, "softmax", 1) == {}
    assert convergence.final_pairs(records, "softmax") == []


def test_without_timing_rounds_the_times_are_unknown_not_zero():
    records = fake_records({("softmax", 1): [0.3, 0.3], ("softmax", 2): [0.3, 0.3]})
    frame = convergence.check_frame(records, ["softmax"], None, {"softmax": 0.01})
    assert frame["time_to_90_s"].isna().all() and frame["time_to_99_s_ci_high"].isna().all()


def test_the_report_flags_a_budget_limited_head_in_its_verdict_and_says_which_reading_is_which():
    import pandas as pd

    from analysis import convergence_report, report

    summary = pd.DataFrame({
        "head": ["softmax", "sampled", "taylor"], "informative": [True, True, False], "seeds": [3, 3, 3],
        "diverged": [0, 0, 0], "accuracy": [0.33, 0.30, 0.02], "accuracy_ci95": [0.01] * 3,
        "budget_limited": [False, True, True], "convergence_gain": [0.001, 0.02, 0.01],
        "convergence_noise": [0.005, 0.005, 0.005], "val_acc_1x": [0.32, 0.29, 0.02], "val_acc_2x": [0.321, 0.31, 0.03],
        **{f"time_to_{p}_s{end}": [1.0, float("inf"), float("nan")] for p in (90, 99)
           for end in ("", "_ci_low", "_ci_high")}})
    comparisons = pd.DataFrame({"head": ["sampled"], "verdict": ["worse than softmax"]})
    verdicts = dict(zip(*report.quality_table(summary, comparisons)[["head", "vs softmax"]].to_numpy().T))
    assert verdicts["sampled"] == f"worse than softmax ({convergence_report.BUDGET_LIMITED})"
    assert verdicts["softmax"] == "baseline" and verdicts["taylor"] == "near chance"  # near chance: never flagged
    assert convergence_report.check_sentence(summary).endswith("more training may narrow their verdicts): sampled.")
    text = "\n".join(convergence_report.section(summary))
    assert "*The best each head reaches* is" in text and "*The best each head reaches within a time budget*" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "uninformative (near chance)" in rows["taylor"] and "not reached" in rows["sampled"]
    flat = summary.assign(budget_limited=[False, False, True])
    assert convergence_report.check_sentence(flat).startswith("No head is budget-limited")


def test_a_gain_above_noise_that_did_not_survive_its_error_is_called_inconclusive_not_converged():
    import pandas as pd

    from analysis import convergence_report

    summary = pd.DataFrame({
        "head": ["softmax", "adaptive", "taylor"], "informative": [True, True, False],
        "budget_limited": [False, False, None], "convergence_gain": [0.001, 0.007, 0.02],
        "convergence_gain_se": [0.0026] * 3, "convergence_p_holm": [1.0, 0.12, float("nan")],
        "convergence_noise": [0.0017, 0.0068, 0.001], "val_acc_1x": [0.32, 0.317, 0.02],
        "val_acc_2x": [0.321, 0.324, 0.04],
        **{f"time_to_{p}_s{end}": [1.0] * 3 for p in (90, 99) for end in ("", "_ci_low", "_ci_high")}})
    rows = {line.split("|")[1].strip(): line for line in
            convergence_report.check_table(summary).to_markdown(index=False).splitlines()[2:]}
    assert "converged within noise" in rows["softmax"] and convergence_report.INCONCLUSIVE in rows["adaptive"]
    assert "+0.70 ± 0.26" in rows["adaptive"] and "0.12" in rows["adaptive"]
    assert "uninformative (near chance)" in rows["taylor"]  # near chance: neither flagged nor inconclusive
    sentence = convergence_report.check_sentence(summary)
    assert sentence.startswith("No head is budget-limited") and sentence.endswith("Holm-corrected): adaptive.")


def test_the_budget_measurement_applies_the_check_to_every_step():
    """analysis/budget.py's table by hand: two seeds per budget, paired by seed; 10 -> 20 epochs gains 4 points
    (differences 4 and 4: no spread, a certain gain) against a pooled noise of 1.15 (budget-limited), 20 -> 40
    gains nothing (within noise); the noise column pools all three budgets' variances (2e-4, 2e-4 and 0:
    sqrt(4e-4 / 3) = 1.155 points). The seeds pair by name, not by the order the runs finished in."""
    from analysis.budget import step_rows

    finals = {("softmax", 10): {8: 0.30, 9: 0.32}, ("softmax", 20): {9: 0.36, 8: 0.34},
              ("softmax", 40): {8: 0.35, 9: 0.35},
              ("taylor", 10): {8: 0.2}, ("taylor", 20): {8: 0.3}, ("taylor", 40): {8: 0.3}}  # one seed: no row
    (row,) = step_rows(finals, [10, 20, 40])
    assert row["head"] == "softmax"
    assert (row["10 ep %"], row["20 ep %"], row["40 ep %"]) == pytest.approx((31.0, 35.0, 35.0))
    assert row["noise (pts)"] == pytest.approx(100 * math.sqrt(4e-4 / 3))
    assert row["gain 10->20 (pts)"] == pytest.approx(4.0) and row["10->20"] == "budget-limited"
    assert row["gain 20->40 (pts)"] == pytest.approx(0.0) and row["20->40"] == "within noise"


def test_the_budget_measurement_trains_each_first_search_config_on_the_tuning_split():
    from analysis.budget import budget_jobs
    from study.presets import PRESETS
    from study.search.spec import StudySpec

    spec = StudySpec(name="r", heads=("softmax", "taylor"), preset="frozen", train=PRESETS["frozen"].train, seed=7,
                     num_samples=4, searches=2)
    trial = {"status": "ok", "epochs": 10, "last_val_acc": 0.3, "trial_id": "t", "params": {"lr": 0.3}}
    summaries = {"softmax": [{"trials": [trial]}, {"trials": [{**trial, "params": {"lr": 0.9}}]}],
                 "taylor": [{"trials": [{**trial, "status": "diverged"}]}, {"trials": [trial]}]}
    jobs = budget_jobs(spec, summaries, ["softmax", "taylor"], [10, 20], seeds=2)
    # taylor's first search has no usable trial: not measured. softmax: its first search's lr, the first search's
    # final seeds (8 and 9), tuning split (not final), on the CPU, longest runs first.
    assert [(h, e, s) for h, e, s, _ in jobs] == [("softmax", 20, 8), ("softmax", 20, 9), ("softmax", 10, 8),
                                                  ("softmax", 10, 9)]
    for _, epochs, seed, cfg in jobs:
        assert (cfg.optim.lr, cfg.optim.epochs, cfg.run.seed, cfg.data.final, cfg.run.device) == (
            0.3, epochs, seed, False, "cpu")


def toy_accuracies(lr: float, epochs: int) -> dict:
    """{factor: final validation accuracy of seeds 1-3} of a neck and softmax head trained for real on a small
    synthetic problem (10 classes, 16-d features, 3,000 training and 1,000 validation rows) at 1x and 2x `epochs`,
    by the convergence check's own runner."""
    from analysis.configs import as_json
    from analysis.convergence import train_on_tuning_split
    from study.class_info import ClassInfo
    from study.config import DataConfig, FrozenConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
    from study.splits import Splits
    from study.synthetic import generate

    arrays = generate(classes=10, dim=16, train=3000, test=1000, noise=0.6, seed=0)
    splits = Splits(arrays["train_features"], arrays["train_labels"], arrays["test_features"],
                    arrays["test_labels"], "val", ClassInfo.uniform(10))

    def config(factor, seed):
        return TrainConfig(data=DataConfig(val_size=1000),
                           model=ModelConfig(backbone="tinyvgg", head="softmax", backbone_knobs={"width": 8}),
                           optim=OptimConfig(lr=lr, batch_size=128, epochs=factor * epochs),
                           run=RunConfig(seed=seed, device="cpu"), frozen=FrozenConfig(enabled=True, neck_width=32))

    return {factor: [train_on_tuning_split(as_json(config(factor, seed)), splits)["history"][-1]["val_acc"]
                     for seed in (1, 2, 3)]
            for factor in (1, 2)}


def test_the_flag_on_real_training():
    """A head trained with a tiny learning rate for 2 epochs is still rising (doubling gained 13 points against a
    3-point spread when written); one trained for 20 epochs sits at its plateau (0.2 points against 0.9). The check's
    statistics as the analysis applies them, on three pairs per head (seeds 1-3 at 1x and 2x; the analysis trains
    two, and their pooled SD then rests on the nine heads' pairs): both heads judged together (their pairs' SD
    pooled, Holm over the two), each against one run's spread over seeds, here of its three 1x runs (the analysis
    takes the final models'). When written: still rising, Holm p 0.0015; at its plateau, 0.59."""
    from analysis.convergence_stats import run_noise

    runs = {"still rising": toy_accuracies(0.002, 2), "at its plateau": toy_accuracies(0.3, 20)}
    found = convergence_verdicts({name: pairs_of(a[1], a[2]) for name, a in runs.items()},
                                 {name: run_noise(a[1]) for name, a in runs.items()})
    assert found["still rising"]["budget_limited"] is True, (runs, found)
    assert found["at its plateau"]["budget_limited"] is False, (runs, found)


def test_the_final_models_spread_is_a_plain_sample_sd():
    from analysis.convergence_stats import run_noise

    assert run_noise([0.30, 0.32, float("nan"), 0.34]) == pytest.approx(0.02)  # a diverged model is left out
    assert math.isnan(run_noise([0.3])) and math.isnan(run_noise([]))
