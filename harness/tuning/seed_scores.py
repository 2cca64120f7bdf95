"""Seed-robust evaluation: a configuration's score is a distribution over seeds, not one number.

The library behind `harness.reeval`, `harness.compare_configs` and `harness.tune`:
- `run_seeds` trains a config over N seeds as the study condition `all` (every
  source's seed varied, op determinism off: the everyday experience), through
  the study machinery, so records, resumption and vectorized replicas are the
  same as `harness.bench`'s. Repeat r of any config gets the same seeds, so two
  configs run with one base seed are paired seed by seed.
- `against_tuned_score` says where a tuner's reported score falls in that
  distribution (percentile) and how much it is expected to drop on re-running
  (the winner's curse: the best of many noisy scores is biased upwards).
- `paired_comparison` gives P(A beats B) over paired seeds with an interval and
  the verdict rule of Bouthillier et al. 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.stats import CONFIDENCE, describe, higher_is_better, mean_interval, sample_sd, t_margin
from harness.errors import UsageError
from harness.studies import Executor, conditions
from harness.studies.records import content_id
from harness.trial.config import TrialConfig
from harness.trial.seeds import SeedSet

# scipy.stats, the study runner and the trainer (TensorFlow) are imported in the functions that use them: they
# take seconds to import, and the scoring flags (score_flags) import this module for a program's --help.

METRICS = ("validation_accuracy", "validation_loss", "test_accuracy", "test_loss")
# Bouthillier et al. 2021: A's improvement is meaningful when P(A beats B) exceeds this,
# and significant when the interval of P excludes 0.5.
MEANINGFUL_PROBABILITY = 0.75


# A validation metric on data that holds nothing out holds out this share (Keras's validation_split habit).
DEFAULT_VALIDATION_FRACTION = 0.2


def task_of(config: TrialConfig) -> str:
    """What the config's model predicts (`trial.train.task_of`)."""
    from harness.trial.train import task_of

    return task_of(config)


def default_metric(task: str) -> str:
    """The score a tuner should use: held-out data, accuracy where the model classifies, else its loss."""
    return "validation_loss" if task == "regression" else "validation_accuracy"


def metrics_of(config: TrialConfig, task: str) -> list[str]:
    """The metrics trials of this config record."""
    kinds = ["loss"] if task == "regression" else ["accuracy", "loss"]
    splits = ["validation", "test"] if config.validation_fraction > 0 else ["test"]
    return [f"{split}_{kind}" for split in splits for kind in kinds]


def check_metric(metric: str, config: TrialConfig, task: str | None = None) -> None:
    """One sentence, before any training, for a metric this config's trials do not record (`task`: its
    model's, from `task_of`, which builds a user's model once when not given)."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    task = task or task_of(config)
    has = metrics_of(config, task)
    if metric in has:
        return
    if metric.endswith("_accuracy") and task == "regression":
        raise UsageError(f"{config.benchmark!r} is a regression (its model's loss is its only measure) and has no "
                         f"accuracy; its metrics are {', '.join(has)}: pass --metric={has[0]}")
    raise UsageError(f"--metric={metric} needs a validation set, and {config.benchmark!r} holds none out "
                     f"(--validation_fraction=0); give a validation share, e.g. --validation_fraction="
                     f"{DEFAULT_VALIDATION_FRACTION}, or pass one of its metrics: {', '.join(has)}")


def seeds_study_id(config: TrialConfig, base_seed: int) -> str:
    """One id per (config, base seed): the same config re-run later extends the same records."""
    identity = {"config": config.replace(replicas=1).as_dict(), "base_seed": base_seed, "condition": conditions.ALL}
    return content_id(identity)


def run_seeds(config: TrialConfig, base_seed: int, n: int, output_dir: Path,
              replicas: int | str = "auto", isolation: str = "inprocess",
              executor: Executor | None = None) -> list[dict[str, Any]]:
    """Trains `config` over seeds 0..n-1 of condition `all` (trials already recorded are reused).

    Returns the n records in repeat order. Vectorized replicas where the model
    supports them (`replicas`: a number or "auto"), else one trial at a time;
    `isolation="process"`: each trial in a fresh process (so one at a time).
    """
    from harness.studies import study_runner

    if replicas == "auto" and isolation != "inprocess":
        replicas = 1
    all_seeds = conditions.condition(conditions.ALL)
    study_id = seeds_study_id(config, base_seed)
    specs = study_runner.plan(config, base_seed, SeedSet.from_base(base_seed), [all_seeds], n, study_id, replicas)
    study_runner.execute(specs, output_dir, isolation=isolation, executor=executor)
    records = study_runner.study_records(specs, output_dir)
    return sorted(records, key=lambda r: r["repeat"])


def scores(records: Sequence[dict[str, Any]], metric: str) -> list[float | None]:
    """Each record's metric, None where the trial failed (e.g. its loss became NaN)."""
    for record in records:
        if record["status"]["code"] == "ok" and record["metrics"].get(metric) is None:
            # Accuracy of a regression (built-in or a user's model with an MSE-like loss) is not a number.
            task = (record.get("model") or {}).get("task", "regression")
            raise UsageError(f"trials of {record['config']['benchmark']!r} record no {metric} (its model is a "
                             f"{task}); pass --metric={metric.rsplit('_', 1)[0]}_loss")
    return [r["metrics"].get(metric) if r["status"]["code"] == "ok" else None for r in records]


def describe_scores(values: Sequence[float | None]) -> dict[str, Any] | None:
    """`stats.describe` of the scores that exist (with the t interval of their mean, `mean_ci95`)."""
    return describe([v for v in values if v is not None])


def pessimistic_bound(values: Sequence[float], metric: str, confidence: float) -> float:
    """One-sided bound of the mean on the bad side: a lower bound for accuracy, an upper one for loss.

    With one value there is no spread to penalize, and the bound is the value.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size < 2:
        return float(data.mean())
    margin = t_margin(data, confidence)
    return float(data.mean() - margin if higher_is_better(metric) else data.mean() + margin)


def against_tuned_score(values: Sequence[float], tuned: float | None, metric: str,
                        higher: bool | None = None) -> dict[str, Any]:
    """Where a tuner's reported score falls among re-evaluation scores, and the expected drop.

    `better_than_share`: the share of re-evaluation runs the tuned score beats
    (ties count half). `expected_drop`: tuned score minus the re-evaluation mean,
    signed so that positive means "re-running does worse than the tuner said",
    with the mean's t interval carried over. `higher`: whether a higher value is better, where the metric's
    name does not say (a user's objective: its study's direction).
    """
    data = np.asarray(values, dtype=np.float64)
    interval = mean_interval(data)
    result: dict[str, Any] = {"tuned_score": tuned, "better_than_share": None, "expected_drop": None,
                              "expected_drop_ci95": None, "tuned_z": None}
    if tuned is None or data.size == 0:
        return result
    sign = 1.0 if (higher_is_better(metric) if higher is None else higher) else -1.0
    beaten = np.sum(sign * (tuned - data) > 0) + 0.5 * np.sum(tuned == data)
    result["better_than_share"] = float(beaten / data.size)
    # `+ 0.0` turns the -0.0 a minimized score equal to its mean gives into 0.0.
    result["expected_drop"] = float(sign * (tuned - data.mean())) + 0.0
    if interval:
        drops = sorted(sign * (tuned - bound) for bound in interval)
        result["expected_drop_ci95"] = [float(d) + 0.0 for d in drops]
    sd = sample_sd(data)
    result["tuned_z"] = float(sign * (tuned - data.mean()) / sd) if sd > 0 else None
    return result


def paired_comparison(a: Sequence[float | None], b: Sequence[float | None], metric: str,
                      confidence: float = CONFIDENCE, higher: bool | None = None) -> dict[str, Any]:
    """P(A beats B) over seeds both ran, with an interval, and the paired mean difference.

    Pair r is A and B trained with the same seeds. A tie counts half a win to
    each. The interval is the exact (Clopper-Pearson) binomial interval of the
    win share among the pairs that did not tie, mapped back to all pairs: it
    stays honest at small N, where a bootstrap of 4 wins out of 4 would claim
    [1, 1]. Verdict (Bouthillier et al. 2021): a difference is detected when
    the interval excludes 0.5, and meaningful when P also exceeds 0.75. `higher` as in against_tuned_score.
    """
    from scipy import stats as scipy_stats

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    n = len(pairs)
    if n == 0:
        raise UsageError("no seed gave a score for both configurations, so they cannot be compared")
    sign = 1.0 if (higher_is_better(metric) if higher is None else higher) else -1.0
    diffs = np.array([sign * (x - y) for x, y in pairs])  # > 0: A did better on this seed
    wins, ties = int(np.sum(diffs > 0)), int(np.sum(diffs == 0))
    decided = n - ties
    probability = (wins + 0.5 * ties) / n
    if decided:
        ci = scipy_stats.binomtest(wins, decided).proportion_ci(confidence_level=confidence, method="exact")
        interval = [(ci.low * decided + 0.5 * ties) / n, (ci.high * decided + 0.5 * ties) / n]
    else:
        interval = [0.5, 0.5]
    raw = np.array([x - y for x, y in pairs])
    mean_ci = mean_interval(raw, confidence)
    # Neither side's score changed across the seeds: no run-to-run noise was seen, though a coarse score
    # (accuracy on few examples) can repeat by chance, so the verdict still rests on the win-share test.
    seed_free = n > 1 and len({x for x, _ in pairs}) == 1 and len({y for _, y in pairs}) == 1
    detected = interval[0] > 0.5 or interval[1] < 0.5
    return {"n_pairs": n, "wins": wins, "ties": ties, "losses": decided - wins,
            "p_a_beats_b": float(probability), "p_ci95": [float(v) for v in interval],
            "mean_difference": float(raw.mean()), "mean_difference_ci95": mean_ci,
            "seed_free": bool(seed_free), "detected": bool(detected),
            "meaningful": bool(detected and max(probability, 1 - probability) > MEANINGFUL_PROBABILITY)}


def verdict_sentence(name_a: str, name_b: str, comparison: dict[str, Any]) -> str:
    """The comparison in one plain sentence, told from the side of the configuration that did better."""
    n, p = comparison["n_pairs"], comparison["p_a_beats_b"]
    if comparison["ties"] == n:
        return f"{name_a} and {name_b} scored the same on all {n} paired seeds: no detectable difference."
    if comparison.get("seed_free") and not comparison["detected"]:
        better, worse = (name_a, name_b) if p > 0.5 else (name_b, name_a)
        return (f"{better} is better than {worse} on all {n} paired seeds, by the same "
                f"{abs(comparison['mean_difference']):.4g} each time: neither score changed with the seed, but "
                f"{n} pairs are too few to rule out chance (6 or more would).")
    low, high = comparison["p_ci95"]
    wins, losses = comparison["wins"], comparison["losses"]
    if p < 0.5:  # Say it as "B is better", with B's probability and interval.
        name_a, name_b, p, low, high, wins, losses = name_b, name_a, 1 - p, 1 - high, 1 - low, losses, wins
    ties = comparison["ties"]
    counts = f"{wins} win{'s' * (wins != 1)}, {ties} tie{'s' * (ties != 1)}, {losses} loss{'es' * (losses != 1)}"
    if p == 0.5:  # neither side is "better": say so rather than "A is better in 50%"
        return (f"{name_a} and {name_b} each do better on half of {n} paired seeds ({counts}; 95% CI of "
                f"P({name_a} beats {name_b}): {low:.0%} to {high:.0%}): no detectable difference.")
    head = (f"{name_a} is better in {p:.0%} of {n} paired seeds ({counts}; 95% CI of P({name_a} beats {name_b}): "
            f"{low:.0%} to {high:.0%})")
    if not comparison["detected"]:
        return f"{head}; the difference is within run-to-run noise at this N: no detectable difference."
    if not comparison["meaningful"]:
        return f"{head}; the difference is detectable but small next to run-to-run noise " \
               f"(P below {MEANINGFUL_PROBABILITY})."
    return f"{head}: {name_a} is reliably better than {name_b}."


