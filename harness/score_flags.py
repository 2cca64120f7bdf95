"""How a configuration is scored over many seeds (reeval, compare_configs, tune): --metric, and --replicas's default."""

from __future__ import annotations

from absl import flags

from harness.flags import value_or
from harness.studies import study_runner
from harness.trial.config import TrialConfig
from harness.tuning import seed_scores

FLAGS = flags.FLAGS

flags.DEFINE_enum("metric", None, list(seed_scores.METRICS),
                  "The score: validation_accuracy by default (tuning on the test set overfits it).")


def metric_from_flags(config: TrialConfig, default: str = "validation_accuracy") -> str:
    metric = FLAGS.metric or default
    seed_scores.check_metric(metric, config)
    return metric


def replicas_flag() -> str:
    """--replicas as given, else auto: a configuration's seeds train together where they can."""
    return value_or("replicas", "auto")


def replicas_from_flags() -> int | str:
    return study_runner.parse_replicas(replicas_flag())
