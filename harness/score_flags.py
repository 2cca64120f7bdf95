"""How a configuration is scored over many seeds (reeval, compare_configs, tune): --metric and its default,
the validation share a validation metric needs, and --replicas's default."""

from __future__ import annotations

from absl import flags

from harness.flags import value_or
from harness.trial.config import TrialConfig
from harness.tuning import seed_scores

FLAGS = flags.FLAGS
HELP_TITLE = "scoring a configuration over seeds"  # its flags' group in a program's --help (cli.help_text)

flags.DEFINE_enum("metric", None, list(seed_scores.METRICS),
                  "The score: validation_accuracy by default, validation_loss for a regression (tuning on the test "
                  "set overfits it); a validation metric holds out --validation_fraction of the training data, "
                  f"{seed_scores.DEFAULT_VALIDATION_FRACTION:.0%} unless the benchmark or the flag says.")


def scoring_from_flags(config: TrialConfig) -> tuple[TrialConfig, str]:
    """(the config to score, the metric): --metric, else the task's default, checked against what the model
    records before any training. A validation metric on a config that holds nothing out, with no
    --validation_fraction given, holds out DEFAULT_VALIDATION_FRACTION (as Keras's validation_split=0.2 would)."""
    task = seed_scores.task_of(config)  # TensorFlow loads here, not with the flags
    metric = FLAGS.metric or seed_scores.default_metric(task)
    if metric.startswith("validation_") and config.validation_fraction == 0 and \
            not FLAGS["validation_fraction"].present:
        config = config.replace(validation_fraction=seed_scores.DEFAULT_VALIDATION_FRACTION)
    seed_scores.check_metric(metric, config, task)
    return config, metric


def replicas_flag() -> str:
    """--replicas as given, else auto: a configuration's seeds train together where they can."""
    return value_or("replicas", "auto")


def replicas_from_flags() -> int | str:
    from harness.studies import study_runner  # TensorFlow: not with the flags, which a program's --help reads

    return study_runner.parse_replicas(replicas_flag())
