"""Statistics of a condition's trials: spread with intervals, disagreement, noise floor.

Distributions come from SciPy; nothing here re-derives them by hand.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# scipy.stats is imported in the functions that use it: it takes seconds to import, and a program's
# --help imports this module (tests/programs/test_help.py).

CONFIDENCE = 0.95

def higher_is_better(metric: str) -> bool:
    """Accuracy metrics grow as results improve; losses shrink."""
    return metric.endswith("accuracy")


def display_scale(metric: str) -> float:
    """The factor a metric is shown with: accuracy in percent points, a loss as it is."""
    return 100.0 if higher_is_better(metric) else 1.0


def format_score(value: float | None, metric: str) -> str:
    """A score as people read it: accuracy in percent points, a loss as it is."""
    if value is None:
        return "-"
    return f"{value * 100:.2f}" if higher_is_better(metric) else f"{value:.4g}"


def format_amount(value: float, metric: str) -> str:
    """A difference or spread: "1.25 points" of accuracy, or a loss difference as is."""
    return f"{value * 100:.2f} points" if higher_is_better(metric) else f"{value:.4g}"


def sd_interval(sd: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Chi-square interval of a standard deviation from n normal samples; None for n < 2."""
    from scipy import stats as scipy_stats

    if n < 2:
        return None
    alpha = 1.0 - confidence
    dof = n - 1
    low = sd * math.sqrt(dof / scipy_stats.chi2.ppf(1 - alpha / 2, dof))
    high = sd * math.sqrt(dof / scipy_stats.chi2.ppf(alpha / 2, dof))
    return low, high


def sd_ratio_interval(sd_a: float, n_a: int, sd_b: float, n_b: int,
                      confidence: float = CONFIDENCE) -> list[float] | None:
    """F interval of the ratio of two standard deviations (sigma_a / sigma_b) from independent normal samples;
    None for fewer than 2 samples a side or a zero SD below."""
    from scipy import stats as scipy_stats

    if n_a < 2 or n_b < 2 or sd_b == 0:
        return None
    alpha = 1.0 - confidence
    ratio = sd_a / sd_b
    upper_f = scipy_stats.f.ppf(1 - alpha / 2, n_a - 1, n_b - 1)
    lower_f = scipy_stats.f.ppf(alpha / 2, n_a - 1, n_b - 1)
    return [ratio / math.sqrt(upper_f), ratio / math.sqrt(lower_f)]


def repeats_to_separate(sd_ratio: float, alpha: float = 1 - CONFIDENCE, power: float = 0.8,
                        most: int = 100_000) -> int | None:
    """Repeats per condition for a two-sided F-test at `alpha` to tell two SDs this far apart with this
    power (normal samples, equal repeats): the smallest n with P(reject | true ratio) >= power.
    None when the SDs are equal, or more than `most` repeats would be needed."""
    from scipy import stats as scipy_stats

    variance_ratio = max(sd_ratio, 1 / sd_ratio) ** 2 if sd_ratio > 0 else math.inf
    if variance_ratio == 1 or not math.isfinite(variance_ratio):
        return None

    def power_at(n: int) -> float:
        dof = n - 1
        high = scipy_stats.f.ppf(1 - alpha / 2, dof, dof)
        low = scipy_stats.f.ppf(alpha / 2, dof, dof)
        # The observed ratio of variances is variance_ratio times an F(dof, dof) variable.
        return float(scipy_stats.f.sf(high / variance_ratio, dof, dof) + scipy_stats.f.cdf(low / variance_ratio,
                                                                                             dof, dof))

    if power_at(most) < power:
        return None
    low, high = 2, most  # power grows with n: bisect for the smallest n that reaches it
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if power_at(middle) < power else (low, middle)
    return low


def sample_sd(values: Sequence[float] | np.ndarray) -> float:
    """The sample SD (n - 1); 0 for one value.

    Identical values have an SD of exactly 0; numpy's two-pass formula can leave ~1e-16.
    """
    data = np.asarray(values, dtype=np.float64)
    return float(data.std(ddof=1)) if data.size > 1 and data.max() > data.min() else 0.0


def describe(values: Sequence[float]) -> dict[str, Any] | None:
    """n, mean with its 95% t-interval, sample SD with its 95% chi-square interval, min, max and range; None
    without values."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if data.size == 0:
        return None
    sd = sample_sd(data)
    interval = sd_interval(sd, int(data.size))
    return {"n": int(data.size), "mean": float(data.mean()), "mean_ci95": mean_interval(data), "sd": sd,
            "sd_ci95": list(interval) if interval else None,
            "min": float(data.min()), "max": float(data.max()), "range": float(data.max() - data.min())}


def step_time_ratio(values: Sequence[float], reference: Sequence[float]) -> dict[str, Any] | None:
    """The ratio of two sets of step times (geometric means: times are skewed, and ratios add on the log
    scale) with a 95% Welch t-interval of the difference of their mean logs.

    Used by the gate's speed rule (a candidate's step times against a baseline's), and for a condition's step
    against control's where no interleaved measurement exists (the summary drops that interval: the two were
    timed minutes apart, `unit_ratio` is the measurement). The interval needs at least 3 samples a side; the
    percentile bootstrap of the medians' ratio it replaces covered 90% at 3 a side and 97% at 10
    (tests/analysis/test_coverage.py measures this one)."""
    from scipy import stats as scipy_stats

    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    b = np.asarray([v for v in reference if v is not None], dtype=np.float64)
    if a.size == 0 or b.size == 0 or np.any(a <= 0) or np.any(b <= 0):
        return None
    log_a, log_b = np.log(a), np.log(b)
    difference = float(log_a.mean() - log_b.mean())
    interval = None
    if a.size >= 3 and b.size >= 3:
        parts = (sample_sd(log_a) ** 2 / a.size, sample_sd(log_b) ** 2 / b.size)
        variance = sum(parts)
        if variance == 0:
            interval = [math.exp(difference)] * 2
        else:
            dof = variance ** 2 / (parts[0] ** 2 / (a.size - 1) + parts[1] ** 2 / (b.size - 1))
            half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * math.sqrt(variance)
            interval = [math.exp(difference - half), math.exp(difference + half)]
    return {"ratio": math.exp(difference), "ci95": interval}


def units_text(measured: dict[str, Any]) -> str:
    """`3 units of 16 interleaved blocks`: what a cost's interval was computed over."""
    units = measured.get("units") or 1
    return f"{units} unit{'s' if units > 1 else ''} of {measured['blocks'] // units} interleaved blocks"



def mean_pairwise_disagreement(predictions: Sequence[np.ndarray]) -> float | None:
    """Mean share of test examples two trials classify differently, over all pairs (churn)."""
    if len(predictions) < 2:
        return None
    _, _, split = _split_pairs(predictions)
    return float(split.sum()) / (len(predictions) * (len(predictions) - 1) // 2 * split.size)


def _split_pairs(predictions: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(table [runs, examples], runs predicting each class per example [classes, examples], pairs of runs that
    differ per example [examples]): churn and its interval read from these counts, in one pass over the runs."""
    table = np.stack(predictions).astype(np.int64)
    runs, examples = table.shape
    counts = np.bincount((table * examples + np.arange(examples)).ravel(),
                         minlength=(int(table.max()) + 1) * examples).reshape(-1, examples)
    return table, counts, (runs * runs - np.sum(counts * counts, axis=0)) // 2


# The fewest runs churn's interval is given for: at 3 and 4 runs whose quality differs, no interval of a pairwise
# statistic reaches 93% coverage (tests/analysis/test_coverage.py); the churn itself is still shown.
CHURN_INTERVAL_MIN_RUNS = 5


def disagreement_interval(predictions: Sequence[np.ndarray],
                          confidence: float = CONFIDENCE) -> list[float] | None:
    """A 95% interval of the mean pairwise disagreement (churn) that counts both of its samples: other runs
    would disagree otherwise, and so would other test examples.

    The runs' part of the variance is the jackknife's over runs (leave one run out: the churn of the other
    runs' pairs), the examples' part the variance over examples of each one's share of pairs that split on
    it; a Student t with Welch-Satterthwaite's degrees of freedom joins them, on the log scale (a churn
    cannot go below 0, and its estimate and spread grow together). The two-way percentile bootstrap this
    replaces covered the truth 67% of the time at 3 runs and 20,000 examples (tests/analysis/test_coverage.py
    measures this one). Everything comes from per-example counts of each class, so 30 runs cost no more than
    reading their predictions. None below CHURN_INTERVAL_MIN_RUNS runs; identical runs give [0, 0] exactly."""
    from scipy import stats as scipy_stats

    runs = len(predictions)
    if runs < CHURN_INTERVAL_MIN_RUNS:
        return None
    table, counts, split = _split_pairs(predictions)
    examples = table.shape[1]
    if not split.any():
        return [0.0, 0.0]
    pairs = runs * (runs - 1) // 2
    total = float(split.sum())
    churn = total / (pairs * examples)
    # Pairs with run r that differ: per example, the runs that predict another class than r does.
    with_run = (runs - np.take_along_axis(counts, table, axis=0)).sum(axis=1)  # [runs]
    left_out = (total - with_run) / ((pairs - (runs - 1)) * examples)
    runs_variance = (runs - 1) / runs * float(np.sum((left_out - left_out.mean()) ** 2))
    examples_variance = float((split / pairs).var(ddof=1)) / examples
    variance = runs_variance + examples_variance
    dof = variance ** 2 / (runs_variance ** 2 / (runs - 1) + examples_variance ** 2 / (examples - 1))
    relative_half = float(scipy_stats.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(variance) / churn
    return [churn * math.exp(-relative_half), min(churn * math.exp(relative_half), 1.0)]


def unstable_examples(predictions: Sequence[np.ndarray], top: int = 8) -> dict[str, Any] | None:
    """Per test example, how many runs leave the most common prediction: how many examples any run
    changes, and the `top` most unstable (index, runs that differ from the majority, predicted classes)."""
    if len(predictions) < 2:
        return None
    table = np.stack(predictions)  # [runs, examples]
    majority_counts = np.max([np.count_nonzero(table == label, axis=0) for label in np.unique(table)], axis=0)
    off_majority = len(predictions) - majority_counts
    order = np.argsort(-off_majority, kind="stable")[:top]
    return {"runs": len(predictions), "changed_examples": int(np.count_nonzero(off_majority)),
            "most_unstable": [{"index": int(i), "runs_off_majority": int(off_majority[i]),
                               "classes": sorted({int(c) for c in table[:, i]})}
                              for i in order if off_majority[i] > 0]}


def max_per_class_difference(per_class: Sequence[Sequence[float | None]]) -> float | None:
    """The largest difference in any one class's accuracy between any two trials."""
    if len(per_class) < 2:
        return None
    table = np.array([[np.nan if v is None else v for v in row] for row in per_class], dtype=np.float64)
    present = ~np.all(np.isnan(table), axis=0)  # Classes absent from the test set have no accuracy.
    if not present.any():
        return None
    seen = table[:, present]
    return float(np.max(np.nanmax(seen, axis=0) - np.nanmin(seen, axis=0)))


def noise_floor(accuracy: float, n_test: int) -> float:
    """sqrt(p(1-p)/n): the SD of test accuracy from the finite test set alone."""
    return math.sqrt(accuracy * (1.0 - accuracy) / n_test)


def paired_ratio(numerator_s: Sequence[float], denominator_s: Sequence[float]) -> dict[str, Any] | None:
    """The ratio of two settings' times from paired blocks (block i of each timed back to back), with a 95%
    t-interval of the mean log ratio: a paired test, so a machine that speeds up or slows down between
    blocks moves both sides of a pair and drops out. Needs at least 2 pairs for an interval."""
    a = np.asarray(numerator_s, dtype=np.float64)
    b = np.asarray(denominator_s, dtype=np.float64)
    if a.size == 0 or a.size != b.size or np.any(a <= 0) or np.any(b <= 0):
        return None
    return {**_ratio_of_logs(np.log(a / b)), "blocks": int(a.size)}


def _ratio_of_logs(logs: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """exp of the mean of log ratios, with the exp of its t-interval (None for one value)."""
    interval = mean_interval(logs)
    return {"ratio": math.exp(float(np.mean(logs))),
            "ci95": [math.exp(interval[0]), math.exp(interval[1])] if interval else None}


def distribution_sd(correct: np.ndarray) -> dict[str, Any] | None:
    """How much of the run-to-run spread of test accuracy is a real difference in model quality (Jordan 2024,
    arXiv 2304.01910; docs/references.md).

    `correct`: [runs, examples] booleans, each run's correctness on each test example. Reduced to integer
    counts first (`distribution_sd_from_counts`), so runs with identical correctness give exactly 0, not the
    1e-14 that floating-point means leave."""
    correct = np.asarray(correct, dtype=bool)
    runs, examples = correct.shape
    right_per_run = correct.sum(axis=1, dtype=np.int64)
    runs_right = correct.sum(axis=0, dtype=np.int64)
    return distribution_sd_from_counts(right_per_run, int(np.sum(runs_right * (runs - runs_right))), examples)


VARIANCE_COMPONENT_METHOD = ("Feldman-Cousins likelihood-ratio interval of the variance left over after "
                             "independent errors (observed variance: scaled chi-square with runs - 1 degrees of "
                             "freedom, the distribution-wise variance >= 0)")


def distribution_sd_from_counts(right_per_run: Sequence[int] | np.ndarray, split_pairs: int,
                                examples: int) -> dict[str, Any] | None:
    """`distribution_sd` from integer counts: each run's number of test examples right (`right_per_run`), and
    `split_pairs`, the sum over examples of c (runs - c), c the runs that get it right (the ordered pairs of
    runs that split on the example).

    Were each example's errors independent of every other's, the accuracy's variance over R runs would be
    sum_i p_i (1 - p_i) / n^2 (p_i = c_i / R, unbiased by R/(R-1)): split_pairs / (R (R-1) n^2). The observed
    variance is (R sum k^2 - (sum k)^2) / (R (R-1) n^2). What it has beyond the independent errors is the
    distribution-wise variance, the spread the runs' accuracy on the whole distribution has; its square root
    is `sd`. Both are ratios of integers, so identical runs give exactly 0.

    The interval: the observed variance is (distribution-wise + independent) variance times chi-square(R-1)/(R-1)
    (accuracy over many examples is near normal; the independent part is estimated over every example, so
    much more precisely), and the distribution-wise variance cannot be negative. A percentile bootstrap over
    runs covered the truth 72% of the time at 5 and 10 runs and gave [0, 0] at 1,000 examples; the
    Feldman-Cousins construction for a bounded parameter keeps 95% at every true value, 0 included, and never
    gives an empty interval (coverage measured: tests/analysis/test_coverage.py). Needs 3 runs."""
    right = [int(k) for k in right_per_run]
    runs = len(right)
    if runs < 3 or examples <= 0:
        return None
    denominator = runs * (runs - 1) * examples * examples
    observed = runs * sum(k * k for k in right) - sum(right) ** 2  # times denominator: exact integers
    independent = int(split_pairs)
    result = {"sd": math.sqrt(max(observed - independent, 0) / denominator),
              "test_set_sd": math.sqrt(observed / denominator),
              "independent_errors_sd": math.sqrt(independent / denominator),
              "runs": runs, "examples": int(examples), "ci_method": VARIANCE_COMPONENT_METHOD}
    if independent == 0:
        # Every example right in all runs or in none: the runs' correctness is identical, their spread exactly 0.
        return {**result, "ci95": [0.0, 0.0]}
    low, high = variance_component_interval(observed / independent, runs - 1)
    scale = math.sqrt(independent / denominator)
    return {**result, "ci95": [math.sqrt(low) * scale, math.sqrt(high) * scale]}


def variance_component_interval(ratio: float | np.ndarray, dof: int) -> tuple[Any, Any]:
    """The 95% Feldman-Cousins interval of t = theta / tau^2 from u = V / tau^2, where V ~ (theta + tau^2)
    chi-square(dof) / dof and theta >= 0 (tau^2 known). Vectorized over `ratio`."""
    grid, accept_low, accept_high = _feldman_cousins_belt(dof)
    ratio = np.asarray(ratio, dtype=np.float64)
    # Both ends of the acceptance region grow with t: the interval runs from the smallest t whose region
    # reaches up to u to the largest t whose region starts below it.
    low = np.where(ratio <= accept_high[0], 0.0, np.interp(ratio, accept_high, grid))
    high = np.interp(ratio, accept_low, grid)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


@functools.lru_cache(maxsize=64)
def _feldman_cousins_belt(dof: int, points: int = 8000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For t on a grid, the acceptance region [u_low, u_high] of u holding 95% of its probability, filled in
    order of the likelihood ratio f(u | t) / f(u | best t >= 0) (Feldman & Cousins 1998). `points`: equal-mass
    quantiles of the chi-square that stand for its distribution."""
    from scipy import stats as scipy_stats

    grid = np.concatenate([[0.0], np.logspace(-4, 8, 600)])
    draws = scipy_stats.chi2.ppf((np.arange(points) + 0.5) / points, dof) / dof  # V / (theta + tau^2)
    kept = int(round(CONFIDENCE * points))
    scale = grid[:, None] + 1.0
    u = scale * draws[None, :]
    best = np.maximum(u, 1.0)  # the scale that fits u best, theta >= 0 (in units of tau^2)
    # -2/dof log of the likelihood ratio: 0 where t fits u best, growing as t fits it worse.
    deviance = np.log(scale) + u / scale - np.log(best) - u / best
    order = np.argsort(deviance, axis=1, kind="stable")[:, :kept]
    accepted = np.take_along_axis(u, order, axis=1)
    return grid, np.maximum.accumulate(accepted.min(axis=1)), np.maximum.accumulate(accepted.max(axis=1))


def t_margin(data: np.ndarray, quantile: float) -> float:
    """Student-t quantile times the standard error of the mean (n >= 2)."""
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(quantile, data.size - 1) * sample_sd(data) / math.sqrt(data.size))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float] | None:
    """Student-t interval of the mean; None for fewer than two values. Identical values: [v, v] exactly."""
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return None
    half = t_margin(data, 0.5 + confidence / 2)
    return [float(data.mean() - half), float(data.mean() + half)]


# The fewest values an interval of their median is given for: below it the widest distribution-free interval
# (min to max) covers less than 93% (4 values: 87.5%), and a narrower one would claim more than it holds.
MEDIAN_INTERVAL_MIN = 5


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> list[float] | None:
    """A distribution-free interval of the median: the order statistics around it (how many values fall below
    the median is binomial(n, 1/2)), interpolated between the two nearest orders to reach `confidence`
    (Hettmansperger & Sheather 1986). None for fewer than MEDIAN_INTERVAL_MIN values."""
    data = np.sort(np.asarray([v for v in values if v is not None], dtype=np.float64))
    n = data.size
    if n < MEDIAN_INTERVAL_MIN:
        return None
    d, weight = _median_orders(n, confidence)
    low = (1 - weight) * data[d - 1] + weight * data[d]
    high = (1 - weight) * data[n - d] + weight * data[n - d - 1]
    return [float(low), float(high)]


@functools.lru_cache(maxsize=256)
def _median_orders(n: int, confidence: float) -> tuple[int, float]:
    """(d, lambda): the interval runs from x_(d) towards x_(d+1) by lambda (1-based), and as far in from
    x_(n+1-d); lambda 0 where no inner pair of orders still reaches `confidence`."""
    from scipy import stats as scipy_stats

    def coverage(d: int) -> float:  # [x_(d), x_(n+1-d)] holds the median this often
        return float(1 - 2 * scipy_stats.binom.cdf(d - 1, n, 0.5))

    d = 1
    while d + 1 <= n // 2 and coverage(d + 1) >= confidence:
        d += 1
    outer = coverage(d)
    if d + 1 > (n + 1) // 2 or outer <= confidence:
        return d, 0.0
    inner = coverage(d + 1)
    share = (outer - confidence) / (outer - inner)
    return d, (n - d) * share / (d + (n - 2 * d) * share)  # Hettmansperger-Sheather's lambda


def unit_ratio(units: Sequence[tuple[Sequence[float], Sequence[float]]]) -> dict[str, Any] | None:
    """The ratio of two settings' times measured in independent units (each a freshly built model with its own
    traced loops), each unit's interleaved blocks giving its mean log ratio (B over A, `paired_ratio`); the
    95% interval is a t-interval over the units' means. Block-to-block noise within a unit is in each unit's
    mean, and so is everything that differs between units (where the model's buffers landed, its traces,
    what else the machine did meanwhile): what the next measurement would find, which the blocks of one unit
    alone leave out (they printed -18% [-31%, -2%] and +17% [+4%, +33%] for one study minutes apart). One unit:
    the ratio, no interval.

    `units`: per unit, (numerator seconds, denominator seconds) per block, paired block by block."""
    per_unit = [paired_ratio(numerator_s, denominator_s) for numerator_s, denominator_s in units]
    if not per_unit or None in per_unit:
        return None
    return {**_ratio_of_logs([math.log(unit["ratio"]) for unit in per_unit]), "units": len(per_unit),
            "blocks": sum(unit["blocks"] for unit in per_unit)}


# A run is named an outlier when the others (itself left out) make it this unlikely, over all the runs of its
# condition (Bonferroni): a condition of normal runs names one in 0.1% of studies at any number of runs
# (tests/analysis/test_coverage.py measures it), while a run trained otherwise lies tens of SDs away.
OUTLIER_FALSE_ALARM = 0.001
OUTLIER_MIN_RUNS = 5


def outliers(values: Sequence[tuple[str, float]], at_least: float = 0.0) -> list[dict[str, Any]]:
    """The runs whose value lies far outside their condition's others: [{trial_key, value, sds_from_others,
    others_mean}], most extreme first. Each run is set against the mean and SD of the others alone
    (an externally studentized residual, Student t with runs - 2 degrees of freedom), so the outlier cannot
    widen the yardstick that measures it. `at_least`: the smallest difference worth naming (the test set's
    noise floor: a run one example away from identical others is not an outlier). Nothing is dropped from
    any statistic; this only names. Needs OUTLIER_MIN_RUNS runs."""
    from scipy import stats as scipy_stats

    n = len(values)
    if n < OUTLIER_MIN_RUNS:
        return []
    data = np.asarray([v for _, v in values], dtype=np.float64)
    others = data[np.array([[j for j in range(n) if j != i] for i in range(n)])]  # [runs, runs - 1]
    centre = others.mean(axis=1)
    equal = others.max(axis=1) == others.min(axis=1)  # their SD is exactly 0, not ~1e-16
    spread = np.where(equal, 0.0, others.std(axis=1, ddof=1))
    distance = np.abs(data - centre)
    with np.errstate(divide="ignore", invalid="ignore"):
        sds = np.where(equal, np.inf, distance / spread)
    p = 2 * scipy_stats.t.sf(sds / math.sqrt(1 + 1 / (n - 1)), n - 2)
    named = (p < OUTLIER_FALSE_ALARM / n) & (distance > at_least) & (distance > 0)
    found = [{"trial_key": values[i][0], "value": float(data[i]), "others_mean": float(centre[i]),
              "sds_from_others": None if equal[i] else float(sds[i])} for i in np.flatnonzero(named)]
    return sorted(found, key=lambda row: -(row["sds_from_others"] or math.inf))
