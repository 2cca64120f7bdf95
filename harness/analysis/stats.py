"""Statistics of a condition's trials: spread with intervals, disagreement, noise floor.

Distributions come from SciPy; nothing here re-derives them by hand.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# scipy.stats is imported in the functions that use it: it takes seconds to import, and a program's
# --help imports this module (tests/programs/test_help.py).

CONFIDENCE = 0.95
# Fixed so the same records always give the same summary, bootstrap included.
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_BLOCKS = 2000  # churn's interval resamples test examples in at most this many blocks


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
    """n, mean, sample SD with its 95% interval, min, max and range; None without values."""
    data = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if data.size == 0:
        return None
    sd = sample_sd(data)
    interval = sd_interval(sd, int(data.size))
    return {"n": int(data.size), "mean": float(data.mean()), "sd": sd,
            "sd_ci95": list(interval) if interval else None,
            "min": float(data.min()), "max": float(data.max()), "range": float(data.max() - data.min())}


def ratio_of_medians(values: Sequence[float], reference: Sequence[float]) -> dict[str, Any] | None:
    """median(values) / median(reference) with a 95% percentile-bootstrap interval.

    Used by the gate's speed rule (a candidate's step times against a baseline's), and for a condition's step
    against control's where no interleaved measurement exists (the summary drops that interval: the two were
    timed minutes apart, `paired_ratio` is the measurement). The interval needs at least 3 samples a side.
    """
    from scipy import stats as scipy_stats

    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    b = np.asarray([v for v in reference if v is not None], dtype=np.float64)
    if a.size == 0 or b.size == 0 or np.median(b) == 0:
        return None
    ratio = float(np.median(a) / np.median(b))
    interval = None
    if a.size >= 3 and b.size >= 3:
        result = scipy_stats.bootstrap(
            (a, b), lambda x, y, axis=-1: np.median(x, axis=axis) / np.median(y, axis=axis),
            vectorized=True, paired=False, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED))
        interval = [float(result.confidence_interval.low), float(result.confidence_interval.high)]
    return {"ratio": ratio, "ci95": interval}


def mean_pairwise_disagreement(predictions: Sequence[np.ndarray]) -> float | None:
    """Mean share of test examples two trials classify differently, over all pairs (churn)."""
    if len(predictions) < 2:
        return None
    shares = [float(np.mean(a != b)) for a, b in itertools.combinations(predictions, 2)]
    return float(np.mean(shares))


def disagreement_interval(predictions: Sequence[np.ndarray],
                          confidence: float = CONFIDENCE) -> list[float] | None:
    """A percentile interval of the mean pairwise disagreement, resampling runs and test examples at once.

    Both are samples: other runs would disagree otherwise, and so would other
    test examples. Each resample draws runs and examples with replacement
    (a two-way bootstrap) and averages the disagreement over pairs of distinct
    runs, weighted by how often each was drawn; a pair of one run with itself
    says nothing of churn. Needs at least 3 runs; fixed seed, so the same
    records always give the same interval.

    Examples are drawn in blocks: a fixed random partition into at most
    BOOTSTRAP_BLOCKS blocks (one example each on small test sets). Test
    examples are exchangeable, so resampling blocks gives the same interval to
    within the bootstrap's own noise, and a resample costs the same for 360
    test examples or 100,000. All resamples are drawn at once.
    """
    runs = len(predictions)
    if runs < 3:
        return None
    first, second = np.array(list(itertools.combinations(range(runs), 2))).T
    table = np.stack(predictions)  # [runs, examples]
    differs = (table[first] != table[second]).astype(np.float64)  # [pairs, examples]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n_examples = differs.shape[1]
    blocks = np.array_split(rng.permutation(n_examples), min(n_examples, BOOTSTRAP_BLOCKS))
    block_sums = np.stack([differs[:, block].sum(axis=1) for block in blocks], axis=1)  # [pairs, blocks]
    block_sizes = np.array([len(block) for block in blocks], dtype=np.float64)
    run_counts = rng.multinomial(runs, np.full(runs, 1.0 / runs), size=BOOTSTRAP_RESAMPLES)
    block_counts = rng.multinomial(len(blocks), np.full(len(blocks), 1.0 / len(blocks)),
                                   size=BOOTSTRAP_RESAMPLES).astype(np.float64)
    shares = (block_counts @ block_sums.T) / (block_counts @ block_sizes)[:, None]  # [resamples, pairs]
    pair_weights = run_counts[:, first] * run_counts[:, second]
    drawn_pairs = pair_weights.sum(axis=1) > 0  # else every draw was one run: no pair of distinct runs
    estimates = (pair_weights * shares).sum(axis=1)[drawn_pairs] / pair_weights.sum(axis=1)[drawn_pairs]
    alpha = (1.0 - confidence) / 2
    return [float(np.quantile(estimates, alpha)), float(np.quantile(estimates, 1 - alpha))]


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
    from scipy import stats as scipy_stats

    a = np.asarray(numerator_s, dtype=np.float64)
    b = np.asarray(denominator_s, dtype=np.float64)
    if a.size == 0 or a.size != b.size or np.any(a <= 0) or np.any(b <= 0):
        return None
    logs = np.log(a / b)
    mean = float(logs.mean())
    interval = None
    if logs.size >= 2:
        half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, logs.size - 1) * logs.std(ddof=1) / math.sqrt(logs.size))
        interval = [math.exp(mean - half), math.exp(mean + half)]
    return {"ratio": math.exp(mean), "ci95": interval, "blocks": int(logs.size)}


def distribution_sd(correct: np.ndarray, resamples: int = 1000) -> dict[str, Any] | None:
    """How much of the run-to-run spread of test accuracy is a real difference in model quality (Jordan 2024,
    arXiv 2304.01910; docs/references.md).

    `correct`: [runs, examples] booleans, each run's correctness on each test example. Were each example's
    errors independent of every other's, the accuracy's variance over runs would be
    sum_i p_i (1 - p_i) / n^2 (p_i: the share of runs that get example i right; k/(k-1) unbiases it from k
    runs): what another test set's draw would add. What the observed variance has beyond that is the
    distribution-wise variance, the spread the runs' accuracy on the whole distribution has; its square root
    is `sd` (0 where the observed spread is all independent errors). The interval resamples runs (a percentile
    bootstrap, fixed seed). Needs 3 runs."""
    correct = np.asarray(correct, dtype=np.float64)
    runs, examples = correct.shape
    if runs < 3 or examples == 0:
        return None

    def variances(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(observed, independent-errors) variance of accuracy for each row of run weights (counts)."""
        count = weights.sum(axis=1, keepdims=True)
        accuracy = correct.mean(axis=1)
        mean = (weights @ accuracy)[:, None] / count
        observed = (weights * (accuracy[None, :] - mean) ** 2).sum(axis=1) / (count[:, 0] - 1)
        p = (weights @ correct) / count
        independent = (p * (1 - p)).sum(axis=1) / examples ** 2 * count[:, 0] / (count[:, 0] - 1)
        return observed, independent

    observed, independent = (v[0] for v in variances(np.ones((1, runs))))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    weights = rng.multinomial(runs, np.full(runs, 1 / runs), size=resamples).astype(np.float64)
    boot_observed, boot_independent = variances(weights)
    boot_sd = np.sqrt(np.clip(boot_observed - boot_independent, 0, None))
    low, high = np.percentile(boot_sd, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return {"sd": math.sqrt(max(observed - independent, 0.0)), "ci95": [float(low), float(high)],
            "test_set_sd": math.sqrt(observed), "independent_errors_sd": math.sqrt(independent),
            "runs": int(runs), "examples": int(examples)}
