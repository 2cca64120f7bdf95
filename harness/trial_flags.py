"""Flags that define a trial, defined once and shared by every program that runs trials.

Config flags default to None, meaning "as the benchmark says"; a flag given on
the command line overrides that one field of the benchmark's definition.
"""

from __future__ import annotations

from absl import flags

from harness import config as config_lib
from harness.errors import UsageError
from harness.seeds import SOURCES, SeedSet

FLAGS = flags.FLAGS

flags.DEFINE_string("benchmark", "digits_mlp", "Benchmark definition in benchmarks/ to run.")
flags.DEFINE_integer("seed", 0, "Base seed; every source's seed is derived from it.")
for _source in SOURCES:
    flags.DEFINE_integer(f"{_source}_seed", None, f"Overrides the derived `{_source}` seed alone.")

flags.DEFINE_string("dataset", None, "digits, synthetic, random_regression, or tfds:NAME.")
flags.DEFINE_string("data_dir", None, "TFDS data directory (for tfds:NAME datasets).")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training examples (0: all).")
flags.DEFINE_float("validation_fraction", None, "Share of the training pool held out, chosen by the split seed.")
flags.DEFINE_boolean("augment", None, "Random shifts of training images, keyed by the augment seed.")
flags.DEFINE_enum("model", None, list(config_lib.MODELS), "Model architecture.")
flags.DEFINE_integer("hidden_units", None, "Width of the hidden dense layer.")
flags.DEFINE_float("dropout_rate", None, "Dropout rate (the original question used 0.8).")
flags.DEFINE_integer("epochs", None, "Training epochs.")
flags.DEFINE_integer("batch_size", None, "Training batch size.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate.")
flags.DEFINE_integer("steps_per_loop", None, "Train steps per call of the outer tf.function.")
flags.DEFINE_enum("determinism", None, ["on", "off"], "Op determinism (deterministic GPU kernels).")
flags.DEFINE_boolean("xla", None, "Compile the train step with XLA (jit_compile).")
flags.DEFINE_integer("intra_op_threads", None, "TF intra-op threads (0: TF's default).")
flags.DEFINE_integer("inter_op_threads", None, "TF inter-op threads (0: TF's default).")
flags.DEFINE_integer("flip_bit", None, "Flip the lowest bit of this initial weight (-1: none).")
flags.DEFINE_enum("strategy", None, list(config_lib.STRATEGIES),
                  "mirrored: train under tf.distribute.MirroredStrategy over every local GPU.")

# `replicas` in a config is set by the study when it groups trials (bench's --replicas), not by a flag.
_CONFIG_FLAGS = tuple(name for name in config_lib.CONFIG_FIELDS if name not in ("benchmark", "replicas"))


def config_overrides() -> dict:
    """The config fields given on the command line, as config values."""
    overrides = {name: FLAGS[name].value for name in _CONFIG_FLAGS if FLAGS[name].value is not None}
    if "determinism" in overrides:
        overrides["determinism"] = overrides["determinism"] == "on"
    return overrides


def config_from_flags() -> config_lib.TrialConfig:
    """The benchmark's config with every config flag given on the command line applied."""
    return config_lib.load_benchmark(FLAGS.benchmark, **config_overrides())


def seeds_from_flags() -> SeedSet:
    try:
        return SeedSet.from_base(FLAGS.seed, **{s: FLAGS[f"{s}_seed"].value for s in SOURCES})
    except ValueError as error:
        raise UsageError(str(error)) from None
