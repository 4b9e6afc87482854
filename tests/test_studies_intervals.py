"""The interval arithmetic of the studies, pinned on hand-checkable cases."""

import math

import numpy as np
import pytest

from skvlm.studies._intervals import (
    bootstrap_interval,
    bootstrap_statistic,
    gain,
    paired_t_interval,
    side,
    t_interval,
    verdict,
)

# Student t, 97.5 % quantile, 2 degrees of freedom: with 2 df the CDF is
# 1/2 + t / (2 sqrt(2 + t^2)), so t / sqrt(2 + t^2) = 0.95 and t^2 = 2 * 0.9025 / 0.0975.
T_975_DF2 = math.sqrt(2 * 0.9025 / 0.0975)


def test_t_interval_by_hand():
    # mean 2, sample sd 1, n 3: half-width t(0.975, 2) / sqrt(3)
    mean, (low, high) = t_interval([1.0, 2.0, 3.0])
    half = T_975_DF2 / math.sqrt(3)
    assert mean == 2.0
    assert low == pytest.approx(2.0 - half, abs=1e-12)
    assert high == pytest.approx(2.0 + half, abs=1e-12)


def test_t_interval_one_value_has_no_interval_and_nan_is_dropped():
    assert t_interval([0.7]) == (0.7, None)
    mean, interval = t_interval([float("nan"), 0.4])
    assert mean == 0.4 and interval is None
    mean, interval = t_interval([])
    assert math.isnan(mean) and interval is None


def test_paired_t_interval_is_the_interval_of_the_differences():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1
    mean, (low, high) = paired_t_interval([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert mean == pytest.approx(0.2)
    assert (low, high) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    with pytest.raises(ValueError, match="same shape"):
        paired_t_interval([1.0, 2.0], [1.0])


def test_bootstrap_interval_cases_with_known_answers():
    # a constant difference: every resample has the same mean
    assert bootstrap_interval([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]) == (0.25, (0.25, 0.25))
    # two items 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5 % and 97.5 % percentiles are 0 and 1
    assert bootstrap_interval([0.0, 1.0]) == (0.5, (0.0, 1.0))
    # a pair with NaN on either side (a query without relevant items) is left out
    mean, interval = bootstrap_interval(
        [0.5, float("nan"), 0.7, 0.9], [0.4, 0.1, float("nan"), 0.8]
    )
    assert mean == pytest.approx(0.1) and interval == (pytest.approx(0.1), pytest.approx(0.1))
    assert bootstrap_interval([0.3]) == (0.3, None)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    values = np.random.default_rng(0).normal(0.1, 0.05, size=200)
    a = bootstrap_interval(values, random_state=1)
    assert a == bootstrap_interval(values, random_state=1)
    mean, (low, high) = a
    assert low < mean < high
    # the normal-theory half-width is 1.96 * sd / sqrt(n) ~ 0.0069; the bootstrap is close
    assert (high - low) / 2 == pytest.approx(1.96 * values.std(ddof=1) / math.sqrt(200), rel=0.15)


def test_bootstrap_statistic_resamples_rows_together():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    # b - a is constant, so the paired difference of means never moves
    value, interval = bootstrap_statistic(lambda x, y: np.mean(y) - np.mean(x), a, a + 0.5)
    assert value == 0.5 and interval == (pytest.approx(0.5), pytest.approx(0.5))
    with pytest.raises(ValueError, match="same number of rows"):
        bootstrap_statistic(np.mean, a, a[:2])


@pytest.mark.parametrize(
    "intervals, sign, expected",
    [
        ([[0.01, 0.03], [0.002, 0.2]], 1, "holds"),
        ([[-0.03, -0.01]], -1, "holds"),  # a claimed decrease, measured below zero
        ([[-0.03, -0.01], [-0.5, -0.1]], 1, "does not hold"),
        ([[-0.01, 0.03], [-0.2, 0.1]], 1, "no clear difference"),
        ([[0.01, 0.03], [-0.01, 0.03]], 1, "mixed"),  # one excludes zero, one straddles it
        ([[0.01, 0.03], [-0.03, -0.01]], 1, "mixed"),
        ([None], 1, "no clear difference"),  # one seed: no interval, nothing excluded
        ([[0.0, 0.03]], 1, "no clear difference"),  # touching zero does not exclude it
    ],
)
def test_verdict_rests_on_every_interval(intervals, sign, expected):
    gains = [{"mean": None if iv is None else sum(iv) / 2, "ci95": iv} for iv in intervals]
    assert verdict(gains, sign) == expected


def test_verdict_not_measured_and_gain_format():
    assert verdict([None, None], 1) == "not measured"
    assert gain(0.2, (0.1, 0.3)) == {"mean": 0.2, "ci95": [0.1, 0.3]}
    assert gain(0.2, None) == {"mean": 0.2, "ci95": None}
    assert side({"mean": 0.1, "ci95": [float("nan"), 0.2]}, 1) == "unclear"
