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


def test_step_time_ratio_and_its_interval():
    slow, fast = [2.0, 2.1, 1.9, 2.0, 2.05], [1.0, 1.05, 0.95, 1.0, 1.02]
    result = stats.step_time_ratio(slow, fast)
    assert result["ratio"] == pytest.approx(2.0, rel=0.01)
    low, high = result["ci95"]
    assert 1.85 < low <= result["ratio"] <= high < 2.15
    assert stats.step_time_ratio([1.0, 2.0], [1.0, 1.0])["ci95"] is None  # fewer than 3 a side
    assert stats.step_time_ratio([2.0] * 3, [1.0] * 3)["ci95"] == [2.0, 2.0]
    assert stats.step_time_ratio([], [1.0]) is None


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


def test_churn_interval_covers_the_churn_and_is_zero_for_identical_runs():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 10, 2000)
    # Each of 8 runs changes its own random 5% of the predictions: two runs differ on about 10%.
    runs = [np.where(rng.random(2000) < 0.05, (truth + 1) % 10, truth) for _ in range(8)]
    churn = stats.mean_pairwise_disagreement(runs)
    low, high = stats.disagreement_interval(runs)
    assert 0.08 < churn < 0.11 and low < churn < high and high - low < 0.03
    assert stats.disagreement_interval([truth] * 5) == [0.0, 0.0]
    assert stats.disagreement_interval(runs[:2]) is None  # two runs: one pair, nothing to resample


def test_unstable_examples_counts_runs_off_the_majority():
    runs = [np.array([1, 2, 3, 4]), np.array([1, 2, 3, 5]), np.array([1, 0, 3, 6]), np.array([1, 2, 3, 4])]
    unstable = stats.unstable_examples(runs, top=3)
    assert unstable["changed_examples"] == 2 and unstable["runs"] == 4
    assert unstable["most_unstable"] == [{"index": 3, "runs_off_majority": 2, "classes": [4, 5, 6]},
                                         {"index": 1, "runs_off_majority": 1, "classes": [0, 2]}]


def test_repeats_to_separate_two_sds_reach_the_power_they_promise():
    """Checked by simulation: at the repeats it names, an F-test tells the SDs apart in 80% of studies."""
    from scipy import stats as scipy_stats

    n = stats.repeats_to_separate(math.sqrt(2))  # variances 2:1
    rng = np.random.default_rng(0)

    def rejected(repeats, studies=4000):
        a = rng.normal(0, math.sqrt(2), (studies, repeats)).var(axis=1, ddof=1)
        b = rng.normal(0, 1, (studies, repeats)).var(axis=1, ddof=1)
        high, low = (scipy_stats.f.ppf(q, repeats - 1, repeats - 1) for q in (0.975, 0.025))
        return np.mean((a / b > high) | (a / b < low))

    assert 0.77 < rejected(n) < 0.83 and rejected(n - 15) < 0.75
    assert stats.repeats_to_separate(3.0) < n < stats.repeats_to_separate(1.2)
    assert stats.repeats_to_separate(1.0) is None and stats.repeats_to_separate(1.0001) is None


def test_the_sd_ratio_interval_is_the_f_interval():
    low, high = stats.sd_ratio_interval(0.5, 10, 0.4, 10)
    assert low < 1.25 < high and math.isclose(low * high, 1.25 ** 2, rel_tol=1e-9)  # symmetric in log for equal n
    assert stats.sd_ratio_interval(0.5, 1, 0.4, 10) is None


def test_a_paired_ratio_is_the_geometric_mean_of_the_blocks_ratios_with_a_t_interval():
    exact = stats.paired_ratio([2.0, 4.0, 1.0], [1.0, 2.0, 0.5])
    assert exact == {"ratio": pytest.approx(2.0), "ci95": [pytest.approx(2.0), pytest.approx(2.0)], "blocks": 3}
    # log ratios 0 and log 2: mean log sqrt(2), t(1) half-width 12.706 * sd/sqrt(2) = 12.706 * log(2) / 2.
    spread = stats.paired_ratio([1.0, 2.0], [1.0, 1.0])
    half = 12.7062047 * np.log(2) / 2
    assert spread["ratio"] == pytest.approx(np.sqrt(2))
    assert spread["ci95"] == pytest.approx([np.sqrt(2) * np.exp(-half), np.sqrt(2) * np.exp(half)], rel=1e-6)
    assert stats.paired_ratio([1.0], [2.0])["ci95"] is None
    assert stats.paired_ratio([1.0, 2.0], [1.0]) is None


def test_distribution_sd_tells_independent_errors_from_real_differences_in_quality():
    """Jordan 2024: runs whose errors are independent per example differ only in which examples they get
    right; runs of different skill differ in quality, which another test set would show too."""
    rng = np.random.default_rng(1)
    runs, examples = 10, 2000
    difficulty = rng.beta(2, 0.5, examples)
    independent = rng.random((runs, examples)) < difficulty
    flips = stats.distribution_sd(independent)
    assert flips["ci95"][0] == 0 and flips["sd"] < 0.003
    assert flips["independent_errors_sd"] == pytest.approx(flips["test_set_sd"], rel=0.5)
    skill = rng.normal(0, 0.6, runs)[:, None]
    logits = np.log(difficulty / (1 - difficulty)) + skill
    better_and_worse = rng.random((runs, examples)) < 1 / (1 + np.exp(-logits))
    quality = stats.distribution_sd(better_and_worse)
    assert quality["ci95"][0] > 0.01 and quality["sd"] > 5 * quality["independent_errors_sd"]
    assert (quality["runs"], quality["examples"]) == (runs, examples)
    assert stats.distribution_sd(independent[:2]) is None  # two runs have no interval
    identical = stats.distribution_sd(np.tile(independent[:1], (4, 1)))
    assert identical["sd"] == identical["test_set_sd"] == identical["ci95"][1] == 0
