"""Statistics against inputs whose answers are known."""

import math

import numpy as np
import pytest

from harness.analysis import stats


@pytest.mark.parametrize("n,low,high", [(10, 0.69, 1.83), (30, 0.80, 1.34)])
def test_sd_interval_matches_the_published_chi_square_factors(n, low, high):
    # docs/references.md ("How many runs"): about [0.69, 1.83]x at n=10 and [0.80, 1.34]x at n=30.
    interval = stats.sd_interval(1.0, n)
    assert interval[0] == pytest.approx(low, abs=0.005) and interval[1] == pytest.approx(high, abs=0.005)
    assert stats.sd_interval(1.0, 1) is None


def test_describe_gives_sample_sd_and_range():
    d = stats.describe([1.0, 2.0, 3.0, 4.0])
    assert d["n"] == 4 and d["mean"] == 2.5 and d["range"] == 3.0
    assert d["sd"] == pytest.approx(math.sqrt(5 / 3))
    low, high = stats.sd_interval(d["sd"], 4)
    assert d["sd_ci95"] == [low, high] and low < d["sd"] < high
    assert stats.describe([None]) is None


def test_identical_values_have_an_sd_of_exactly_zero():
    d = stats.describe([0.8722222222222222] * 10)
    assert d["sd"] == 0.0 and d["sd_ci95"] == [0.0, 0.0]


def test_ratio_of_medians_and_its_interval():
    slow, fast = [2.0, 2.1, 1.9, 2.0, 2.05], [1.0, 1.05, 0.95, 1.0, 1.02]
    result = stats.ratio_of_medians(slow, fast)
    assert result["ratio"] == pytest.approx(2.0)
    low, high = result["ci95"]
    assert 1.7 < low <= 2.0 <= high < 2.3
    assert result == stats.ratio_of_medians(slow, fast)  # a fixed bootstrap seed
    assert stats.ratio_of_medians([1.0, 2.0], [1.0, 1.0])["ci95"] is None
    assert stats.ratio_of_medians([], [1.0]) is None


def test_pairwise_disagreement():
    a, b, c = np.array([0, 1, 2, 3]), np.array([0, 1, 2, 0]), np.array([1, 1, 2, 0])
    # Pairs: (a,b) 1/4, (a,c) 2/4, (b,c) 1/4.
    assert stats.mean_pairwise_disagreement([a, b, c]) == pytest.approx((0.25 + 0.5 + 0.25) / 3)
    assert stats.mean_pairwise_disagreement([a]) is None


def test_max_per_class_difference_ignores_absent_classes():
    assert stats.max_per_class_difference([[0.9, 0.5, None], [0.8, 0.9, None]]) == pytest.approx(0.4)
    assert stats.max_per_class_difference([[0.9]]) is None


def test_noise_floor():
    assert stats.noise_floor(0.9, 10_000) == pytest.approx(0.003)
