"""Statistics of a condition's trials: spread with intervals, disagreement, noise floor.

Distributions come from SciPy; nothing here re-derives them by hand.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
# Fixed so the same records always give the same summary, bootstrap included.
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000


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
    if n < 2:
        return None
    alpha = 1.0 - confidence
    dof = n - 1
    low = sd * math.sqrt(dof / scipy_stats.chi2.ppf(1 - alpha / 2, dof))
    high = sd * math.sqrt(dof / scipy_stats.chi2.ppf(alpha / 2, dof))
    return low, high


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

    Used for step time against `control`: for `kernels` it is the cost of op
    determinism (its inverse). The interval needs at least 3 samples a side.
    """
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
    """Mean share of test examples two trials classify differently, over all pairs."""
    if len(predictions) < 2:
        return None
    shares = [float(np.mean(a != b)) for a, b in itertools.combinations(predictions, 2)]
    return float(np.mean(shares))


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
