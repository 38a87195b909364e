"""The study's verdict procedure simulated (analysis/error_rate.py): the new one (R searches per head, one test row per
search) keeps the family-wise false-positive rate at the nominal 5 % and still finds real differences; the old one
(one search, its configuration fixed, seeds paired) calls identical heads different most of the time."""
import math
from dataclasses import replace

import numpy as np
import pytest

from analysis import error_rate as er
from analysis.stats import ALPHA

IMAGES = 1000


def test_the_new_procedure_keeps_the_family_wise_rate_of_eight_identical_heads_at_five_percent():
    studies = 800
    fwer = er.family_error_rate(replace(er.NEW, images=IMAGES), heads=8, studies=studies, seed=11)
    bound = ALPHA + 2.5 * math.sqrt(ALPHA * (1 - ALPHA) / studies)  # nominal rate + 2.5 binomial SE: about 0.069
    assert fwer.rate <= bound, (fwer, fwer.interval)


def test_the_old_procedure_calls_identical_heads_different_most_of_the_time():
    # Observed: 0.71 over 1000 studies (python -m analysis.error_rate), 0.755 here [0.69, 0.81]. Its paired seed test
    # reports a standard error of about 0.09 points for an A/A difference whose real spread is about 0.44 points.
    fwer = er.family_error_rate(replace(er.OLD, images=IMAGES), heads=8, studies=200, seed=12)
    assert fwer.rate > 0.5, (fwer, fwer.interval)
    # One pair alone, as in the real A/A run (naive_softmax against softmax), no Holm factor: 0.565 here [0.49, 0.63].
    pair = er.family_error_rate(replace(er.OLD, images=IMAGES), heads=1, studies=200, seed=13)
    assert pair.rate > 0.35, (pair, pair.interval)


def test_real_differences_are_detected_by_the_new_procedure():
    detect = er.power([-4.0, -2.0] + [0.0] * 6, replace(er.NEW, images=IMAGES), studies=400, seed=14)
    assert detect[0].rate >= 0.9, detect[0]
    # -2 points at R = 4 x S = 2 under sd_config 0.3: about 0.75 (0.7575 here), NOT 0.9. The standard error is about
    # 0.25 points, but with R - 1 = 3 degrees of freedom the t critical value at Holm's 0.05/7 is about 6.6, and an
    # estimated SE above 0.3 points (one study in four) misses it. Asserted at its observed level less a margin;
    # six searches (next test) reach 0.9.
    assert detect[1].rate >= 0.6, detect[1]
    assert max(d.rate for d in detect[2:]) <= 0.05, detect[2:]  # the null heads beside them


def test_six_searches_detect_two_points_in_nine_studies_of_ten():
    detect = er.power([-2.0] + [0.0] * 7, replace(er.NEW, images=IMAGES, searches=6), studies=200, seed=15)
    assert detect[0].rate >= 0.9, detect[0]


def test_without_configuration_or_seed_noise_identical_heads_give_identical_tables():
    design = replace(er.NEW, images=20000, sd_config=0.0, sd_seed=0.0)
    correct, searches, seeds = er.simulate_study(np.random.default_rng(0), [0.0, -4.0], design)
    assert correct.shape == (3, 8, 20000) and correct.dtype == bool
    assert np.array_equal(correct[0], correct[1])
    assert searches.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and seeds.tolist() == list(range(8))
    assert correct[0].mean() == pytest.approx(0.33, abs=0.01)
    assert correct[2].mean() - correct[0].mean() == pytest.approx(-0.04, abs=0.005)  # delta in points, calibrated
    assert not np.array_equal(correct[0, 0], correct[0, 1])  # different seeds draw different images


def test_a_seed_effect_given_in_points_spreads_accuracy_by_those_points():
    # 400 models of one head, N large: accuracy sd = sqrt(sd_seed^2 + per-image draws' sqrt(mean p(1-p) / N)^2).
    design = replace(er.NEW, images=20000, sd_config=0.0, sd_seed=3.0, searches=100, seeds=4)
    correct, _, _ = er.simulate_study(np.random.default_rng(1), [], design)
    mu, slope = er.calibrate(design.accuracy, design.sd_image)
    expected = math.sqrt(0.03 ** 2 + slope / design.images)  # E[p(1-p)] = slope
    assert correct[0].mean(1).std(ddof=1) == pytest.approx(expected, rel=0.15)


def test_the_command_prints_the_table(capsys):
    er.main(["--studies", "3", "--images", "50", "--rng-seed", "1"])
    out = capsys.readouterr().out
    assert "new: search rows, paired     4 x 2" in out and "old: seed rows, paired       1 x 5" in out
    assert "3 simulated studies per cell" in out and "sd_config 0.3 pts" in out
    with pytest.raises(SystemExit) as stop:
        er.main(["--searches", "1"])  # every bad value: tests/test_bad_input.py
    assert stop.value.code == 2
