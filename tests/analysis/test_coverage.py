"""Every interval the harness prints, checked by simulation against a known truth (issue 43).

Each cell simulates many studies whose true value is known, computes the interval exactly as a study's summary
does, and counts how often it holds the truth: a nominal 95% interval must hold it 93% to 97% of the time.
Fixed seeds, so a cell gives the same count on every run; `python tests/analysis/test_coverage.py` prints the
table that docs/reproducibility.md shows. numpy only, no TensorFlow: the quick tier's cells take seconds,
and the cells that simulate 100,000 test examples or 30 runs of 20,000 are in the full tier (`slow`).

What the intervals cover, and with what model of the runs:
- accuracy's distribution-wise SD (Jordan 2024): each test example has its own chance of being right
  (20 levels of difficulty), each run shifts every chance by its own normal amount (the true distribution-wise
  SD), and each run gets each example right independently given those. At 1,000 examples the runs'
  [runs, examples] correctness is drawn whole and goes through `stats.distribution_sd`; at 20,000 and 100,000
  the counts it reduces to are drawn instead (each run's correct count per difficulty level is binomial; how
  many runs get an example right is Poisson-binomial per level) and go through
  `stats.distribution_sd_from_counts`: the same numbers, without drawing 3 million booleans a study.
- churn: each example has its own chance of being predicted off the majority class, scaled per run by a
  lognormal factor (runs of different quality), and a run off the majority picks one of 9 other classes.
- the determinism cost: each unit has its own normal offset of the log ratio, each block its own noise.
- SD, mean, share-of-all and power ratios, the re-evaluation's mean and expected drop: normal runs.
- the median step, and the gate's ratio of two studies' steps: lognormal step times.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.analysis import stats  # noqa: E402
from harness.tuning import seed_scores  # noqa: E402

LOW, HIGH = 0.93, 0.97
STUDIES = 2000  # per cell: 95% coverage is then measured to within about +-1% (2 SE)

# Distribution-wise SD: 20 levels of difficulty, more easy examples than hard ones (a 90%-accurate model).
DIFFICULTY = np.linspace(0.55, 0.995, 20)
LEVEL_SHARE = np.linspace(1, 3, 20) / np.linspace(1, 3, 20).sum()


def _correctness(rng: np.random.Generator, runs: int, examples: int, true_sd: float) -> np.ndarray:
    """[runs, examples] correctness of one simulated study, drawn whole."""
    level = rng.choice(DIFFICULTY.size, size=examples, p=LEVEL_SHARE)
    chance = np.clip(DIFFICULTY[level][None, :] + rng.normal(0, true_sd, (runs, 1)), 0, 1)
    return rng.random((runs, examples)) < chance


def _counts(rng: np.random.Generator, runs: int, examples: int, true_sd: float) -> tuple[np.ndarray, int]:
    """(each run's correct count, split pairs) of one simulated study, drawn as counts."""
    per_level = rng.multinomial(examples, LEVEL_SHARE)
    chance = np.clip(DIFFICULTY[None, :] + rng.normal(0, true_sd, (runs, 1)), 0, 1)  # [runs, levels]
    right = rng.binomial(per_level[None, :], chance).sum(axis=1)
    # How many runs get an example of a level right: Poisson-binomial over the runs' chances.
    pmf = np.zeros((DIFFICULTY.size, runs + 1))
    pmf[:, 0] = 1.0
    for run in range(runs):
        pmf[:, 1:] = pmf[:, 1:] * (1 - chance[run, :, None]) + pmf[:, :-1] * chance[run, :, None]
        pmf[:, 0] *= 1 - chance[run]
    pmf = np.clip(pmf, 0, None)
    histogram = rng.multinomial(per_level, pmf / pmf.sum(axis=1, keepdims=True))
    c = np.arange(runs + 1)
    return right, int(np.sum(histogram * c * (runs - c)))


def distribution_sd_coverage(runs: int, examples: int, true_sd: float, studies: int = STUDIES) -> float:
    rng = np.random.default_rng([runs, examples, int(true_sd * 1e5)])
    held = 0
    for _ in range(studies):
        if examples <= 1000:
            low, high = stats.distribution_sd(_correctness(rng, runs, examples, true_sd))["ci95"]
        else:
            low, high = stats.distribution_sd_from_counts(*_counts(rng, runs, examples, true_sd), examples)["ci95"]
        held += low <= true_sd <= high
    return held / studies


# Churn: 60% of examples never change; a few are off the majority class often.
OFF_CHANCE = np.array([0.0, 0.01, 0.05, 0.15, 0.35])
OFF_SHARE = np.array([0.6, 0.2, 0.1, 0.07, 0.03])
RUN_SPREAD = 0.3  # lognormal sigma of a run's factor on every example's chance


def true_churn() -> float:
    """Two runs disagree on an example unless both keep the majority class or both leave it for the same one
    (1 in 9): 1 - (1 - m f)(1 - m' f) - m m' f^2 / 9, whose mean over independent run factors m, m' needs only
    their mean."""
    mean = math.exp(RUN_SPREAD ** 2 / 2)
    return float(np.sum(OFF_SHARE * (2 * mean * OFF_CHANCE - mean ** 2 * OFF_CHANCE ** 2 * 10 / 9)))


def churn_coverage(runs: int, examples: int, studies: int = STUDIES) -> float:
    rng = np.random.default_rng([runs, examples, 7])
    truth = true_churn()
    held = 0
    for _ in range(studies):
        chance = OFF_CHANCE[rng.choice(OFF_CHANCE.size, size=examples, p=OFF_SHARE)]
        factor = rng.lognormal(0, RUN_SPREAD, (runs, 1))
        off = rng.random((runs, examples)) < np.minimum(factor * chance[None, :], 1)
        predictions = np.where(off, rng.integers(1, 10, (runs, examples)), 0).astype(np.uint8)
        low, high = stats.disagreement_interval(list(predictions))
        held += low <= truth <= high
    return held / studies


def cost_coverage(units: int, true_ratio: float, studies: int = STUDIES) -> float:
    """Units of 16 block pairs: each unit's log ratio off by its own N(0, 0.05), each block's by N(0, 0.15)."""
    rng = np.random.default_rng([units, int(true_ratio * 100)])
    held = 0
    for _ in range(studies):
        offsets = math.log(true_ratio) + rng.normal(0, 0.05, units)
        measured = []
        for offset in offsets:
            a = rng.lognormal(math.log(0.025), 0.2, 16)
            measured.append((a * np.exp(offset + rng.normal(0, 0.15, 16)), a))
        low, high = stats.unit_ratio(measured)["ci95"]
        held += low <= true_ratio <= high
    return held / studies


def normal_coverage(runs: int, what: str, studies: int = STUDIES) -> float:
    """SD (chi-square), mean (t), share of all and the power line's SD ratio (F), and the re-evaluation's mean
    and expected drop (t), of normal runs with mean 0.9 and SD 0.004 (and 0.008 for `all`'s)."""
    rng = np.random.default_rng([runs, len(what)])
    held = 0
    for _ in range(studies):
        values = rng.normal(0.9, 0.004, runs)
        if what == "sd":
            low, high = stats.describe(values)["sd_ci95"]
            held += low <= 0.004 <= high
        elif what == "mean":
            low, high = stats.describe(values)["mean_ci95"]
            held += low <= 0.9 <= high
        elif what == "sd ratio":
            everything = rng.normal(0.9, 0.008, runs)
            low, high = stats.sd_ratio_interval(stats.sample_sd(values), runs, stats.sample_sd(everything), runs)
            held += low <= 0.5 <= high
        elif what == "expected drop":
            tuned = 0.91  # the tuner's score: 1 point above the true mean
            drop = seed_scores.against_tuned_score(list(values), tuned, "test_accuracy")
            low, high = drop["expected_drop_ci95"]
            held += low <= tuned - 0.9 <= high
    return held / studies


def speed_coverage(trials: int, studies: int = STUDIES) -> float:
    """The gate's speed rule: two studies' lognormal step times of the same true median."""
    rng = np.random.default_rng([trials, 5])
    held = 0
    for _ in range(studies):
        low, high = stats.step_time_ratio(rng.lognormal(math.log(0.2), 0.3, trials),
                                          rng.lognormal(math.log(0.2), 0.3, trials))["ci95"]
        held += low <= 1.0 <= high
    return held / studies


def median_coverage(trials: int, studies: int = STUDIES) -> float:
    rng = np.random.default_rng([trials, 3])
    held = 0
    for _ in range(studies):
        low, high = stats.median_interval(rng.lognormal(math.log(0.2), 0.3, trials))
        held += low <= 0.2 <= high
    return held / studies


QUICK: list[tuple[str, str, Callable[[], float]]] = [
    *[("distribution-wise SD", f"{r} runs, 1,000 examples, true SD {sd * 100:g} points",
       lambda r=r, sd=sd: distribution_sd_coverage(r, 1000, sd)) for r in (3, 5, 10, 30) for sd in (0, 0.002, 0.004)],
    *[("distribution-wise SD", f"{r} runs, 20,000 examples, true SD {sd * 100:g} points",
       lambda r=r, sd=sd: distribution_sd_coverage(r, 20_000, sd)) for r in (3, 5, 10) for sd in (0, 0.004)],
    *[("churn", f"{r} runs, 1,000 examples", lambda r=r: churn_coverage(r, 1000)) for r in (5, 10)],
    *[("determinism cost", f"{u} units of 16 blocks, true ratio {t:g}", lambda u=u, t=t: cost_coverage(u, t))
      for u in (3, 5) for t in (1.0, 1.1)],
    *[(name, f"{r} runs", lambda r=r, w=what: normal_coverage(r, w))
      for name, what in (("SD (chi-square)", "sd"), ("mean accuracy (t)", "mean"),
                         ("share of all, power ratio (F)", "sd ratio"),
                         ("re-evaluation's mean and expected drop (t)", "expected drop"))
      for r in (3, 5, 10, 30)],
    *[("median step (order statistics)", f"{n} trials", lambda n=n: median_coverage(n)) for n in (5, 10, 30)],
    *[("the gate's speed ratio (Welch t on logs)", f"{n} trials a side", lambda n=n: speed_coverage(n))
      for n in (3, 5, 10)],
]
FULL: list[tuple[str, str, Callable[[], float]]] = [
    *[("distribution-wise SD", f"{r} runs, {n:,} examples, true SD {sd * 100:g} points",
       lambda r=r, n=n, sd=sd: distribution_sd_coverage(r, n, sd))
      for r, n in ((30, 20_000), (3, 100_000), (5, 100_000), (10, 100_000), (30, 100_000))
      for sd in (0, 0.002, 0.004)],
    *[("distribution-wise SD", f"{r} runs, 20,000 examples, true SD 0.2 points",
       lambda r=r: distribution_sd_coverage(r, 20_000, 0.002)) for r in (3, 5, 10)],
    *[("churn", f"{r} runs, {n:,} examples", lambda r=r, n=n: churn_coverage(r, n, 1000))
      for r, n in ((30, 1000), (5, 20_000), (10, 20_000), (30, 20_000), (5, 100_000))],
    *[("determinism cost", f"10 units of 16 blocks, true ratio {t:g}", lambda t=t: cost_coverage(10, t))
      for t in (1.0, 1.1)],
]


def _assert_covers(measure: Callable[[], float]) -> None:
    covered = measure()
    assert LOW <= covered <= HIGH, f"covered the truth in {covered:.1%} of simulated studies"


@pytest.mark.parametrize("interval,cell,measure", QUICK, ids=[f"{i}: {c}" for i, c, _ in QUICK])
def test_each_interval_covers_its_truth_95_percent_of_the_time(interval, cell, measure):
    _assert_covers(measure)


@pytest.mark.slow
@pytest.mark.parametrize("interval,cell,measure", FULL, ids=[f"{i}: {c}" for i, c, _ in FULL])
def test_each_interval_covers_its_truth_at_large_test_sets_and_many_runs(interval, cell, measure):
    _assert_covers(measure)


def test_where_no_interval_reaches_the_coverage_none_is_given():
    """Churn at 3 or 4 runs of different quality (one pairwise statistic from 3 pairs), a median of fewer than
    5 trials: `None` (the table says why), never a narrow interval."""
    rng = np.random.default_rng(0)
    runs = [rng.integers(0, 10, 1000).astype(np.uint8) for _ in range(4)]
    assert stats.disagreement_interval(runs[:3]) is None and stats.disagreement_interval(runs) is None
    assert stats.median_interval([0.2, 0.21, 0.19, 0.2]) is None
    assert stats.unit_ratio([([0.02] * 16, [0.019] * 16)])["ci95"] is None  # one unit: one sample


def test_identical_runs_give_exact_zeros_and_no_width():
    """Bitwise-identical runs: every SD and churn exactly 0 (integer counts), not float noise read as a finding."""
    rng = np.random.default_rng(0)
    one = rng.random(20_000) < 0.84
    for runs in (3, 5, 10):
        described = stats.distribution_sd(np.tile(one, (runs, 1)))
        assert described["sd"] == described["test_set_sd"] == described["independent_errors_sd"] == 0.0
        assert described["ci95"] == [0.0, 0.0]
        assert stats.disagreement_interval([one.astype(np.uint8)] * max(runs, 5)) == [0.0, 0.0]
    accuracy = stats.describe([float(one.mean())] * 5)
    assert accuracy["sd"] == 0.0 and accuracy["sd_ci95"] == [0.0, 0.0]
    assert accuracy["mean_ci95"] == [accuracy["mean"], accuracy["mean"]]


def test_outliers_false_alarms_stay_rare_and_a_run_trained_otherwise_is_named():
    """Normal runs: a condition names an outlier in about 0.1% of studies at any number of runs, and 20 studies
    of 13 conditions of 10 runs name none; one run 12 SDs away among 10 is named, with how far."""
    rng = np.random.default_rng(0)
    for runs in (5, 10, 30):
        named = sum(bool(stats.outliers([(str(i), v) for i, v in enumerate(rng.normal(0.9, 0.004, runs))]))
                    for _ in range(4000))
        assert named / 4000 <= 0.003, (runs, named)
    assert not any(stats.outliers([(str(i), v) for i, v in enumerate(rng.normal(0.9, 0.004, 10))])
                   for _ in range(20 * 13))
    planted = [(f"t{i}", v) for i, v in enumerate(rng.normal(0.9, 0.004, 9))] + [("slow_lr", 0.9 - 12 * 0.004)]
    found = stats.outliers(planted)
    assert [row["trial_key"] for row in found] == ["slow_lr"] and found[0]["sds_from_others"] > 8
    # A run one test example away from identical others is not an outlier: below the noise floor.
    assert stats.outliers([(str(i), 0.9) for i in range(9)] + [("one", 0.9001)], at_least=0.003) == []


def coverage_table() -> str:
    """docs/reproducibility.md's table: every cell, quick and full, with its measured coverage."""
    lines = ["| interval | simulated studies | tier | covered |", "|---|---|---|---|"]
    for tier, cells in (("quick", QUICK), ("full", FULL)):
        lines += [f"| {interval} | {cell} | {tier} | {measure():.1%} |" for interval, cell, measure in cells]
    return "\n".join(lines)


if __name__ == "__main__":
    print(coverage_table())
