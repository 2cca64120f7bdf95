"""Flags that define a trial, defined once and shared by every program that runs trials.

Config flags default to None, meaning "as the benchmark says"; a flag given on
the command line overrides that one field of the benchmark's definition.
"""

from __future__ import annotations

import json
from typing import Any

from absl import flags

from harness.errors import UsageError
from harness.flags import define_float  # importing it defines --epochs, a config field, too
from harness.studies.records import NotStrictJson, strict_json_loads
from harness.trial import config as config_lib
from harness.trial.seeds import MAX_BASE_SEED, SOURCES, SeedSet

FLAGS = flags.FLAGS
# Its flags' group in a program's --help (cli.help_text).
HELP_TITLE = "the trial; a config flag given overrides that field of the benchmark"

flags.DEFINE_string("benchmark", config_lib.DEFAULT_BENCHMARK, "Benchmark definition in benchmarks/ to run.")
flags.DEFINE_integer("seed", 0, "Base seed; every source's seed is derived from it.", lower_bound=0,
                     upper_bound=MAX_BASE_SEED)
for _source in SOURCES:
    flags.DEFINE_integer(f"{_source}_seed", None, f"Overrides the derived `{_source}` seed alone.")

flags.DEFINE_string("data", None, "Data: digits, synthetic, random_regression, tfds:NAME, npz:PATH (arrays x_train, "
                    "y_train, x_test, y_test, or x, y), csv:PATH, or path/to/file.py:function returning arrays or "
                    "tf.data.Datasets.")
flags.DEFINE_alias("dataset", "data")
flags.DEFINE_string("data_dir", None, "TFDS data directory (for tfds:NAME datasets).")
flags.DEFINE_string("label_column", None, "csv:PATH data: the column holding the label (default: the last).")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training examples (0: all).")
define_float("validation_fraction", None, "Share of the training pool held out, chosen by the split seed.")
flags.DEFINE_boolean("augment", None, "Random shifts of training images, keyed by the augment seed.")
flags.DEFINE_string("model", None, f"A built-in model ({', '.join(config_lib.MODELS)}) or your own Keras model: "
                    "path/to/file.py:function or package.module:function returning a keras.Model.")
flags.DEFINE_multi_string("model_args", [], "Keyword arguments of your model function: a JSON object, or "
                          "NAME=VALUE (repeatable; VALUE read as JSON where it parses, else as a string).")
flags.DEFINE_string("optimizer", None, "Your model, if not compiled: a Keras optimizer name (default adam).")
flags.DEFINE_string("loss", None,
                    "Your model, if not compiled: a Keras loss name, e.g. sparse_categorical_crossentropy.")
flags.DEFINE_string("class_weight", None, "Weight each training example's loss by its class, as Keras's "
                    "fit(class_weight=...): a JSON object of class to weight, e.g. '{\"0\": 1, \"1\": 5}' (a "
                    "class not named weighs 1). Sample weights come with the data (docs/your-own-model.md).")
flags.DEFINE_integer("hidden_units", None, "Built-in models: width of the hidden dense layer.")
define_float("dropout_rate", None, "Built-in models: dropout rate (the original question used 0.8).")
flags.DEFINE_integer("batch_size", None, "Training batch size.")
define_float("learning_rate", None, "Learning rate (your compiled model's own when not given).")
flags.DEFINE_integer("steps_per_loop", None, "Train steps per call of the outer tf.function.")
flags.DEFINE_enum("determinism", None, ["on", "off"], "Op determinism (deterministic GPU kernels).")
flags.DEFINE_boolean("xla", None, "Compile the train step with XLA (jit_compile).")
flags.DEFINE_enum("xla_update", None, list(config_lib.XLA_UPDATE_CHOICES),
                  "Your model: compile its Keras optimizer's update alone with XLA, into fused kernels (on), run "
                  "it op by op as Keras fit does on a CPU (off), or on for models big enough to gain (auto).")
flags.DEFINE_integer("intra_op_threads", None, "TF intra-op threads (0: TF's default).")
flags.DEFINE_integer("inter_op_threads", None, "TF inter-op threads (0: TF's default).")
flags.DEFINE_integer("flip_bit", None, "Flip the lowest bit of this initial weight (-1: none).")
flags.DEFINE_integer("reduction_order", None, "Permute each batch by this seed, so every sum of the train step adds "
                     "its terms in another order, each example keeping its dropout mask (-1: none; the `order` "
                     "condition sets it per repeat).")
flags.DEFINE_enum("trainer", None, list(config_lib.TRAINERS), "Who runs the steps: the harness's tf.function loop "
                  "(default), or your model's own Keras fit (keras_fit: its compile(), the harness's seeds and data).")
flags.DEFINE_integer("resume_epoch", None, "The `resume` condition: train to the end of this epoch, checkpoint the "
                     "whole training state, and finish in a fresh process restored from it (0 or unset: the middle "
                     "epoch, epochs // 2). Other conditions train uninterrupted.")
flags.DEFINE_enum("strategy", None, list(config_lib.STRATEGIES),
                  "mirrored: train under tf.distribute.MirroredStrategy over every local GPU.")

# Config fields and the flags that set them. `replicas` is set by the study when it groups trials
# (bench's --replicas), not by a flag; `model_args` has a parser of its own.
_FLAG_OF_FIELD = {name: ("data" if name == "dataset" else name) for name in config_lib.CONFIG_FIELDS
                  if name not in ("benchmark", "replicas", "model_args")}

# The flags `config_from_flags` and `config_overrides` read (--dataset is --data's alias), and those
# `seeds_from_flags` reads. A program declares the ones it reads as its key flags, which its --help lists.
CONFIG_FLAGS = ("benchmark", *_FLAG_OF_FIELD.values(), "dataset", "model_args")
SEED_FLAGS = ("seed", *(f"{source}_seed" for source in SOURCES))


def config_overrides() -> dict:
    """The config fields given on the command line, as config values."""
    overrides = {name: FLAGS[flag].value for name, flag in _FLAG_OF_FIELD.items() if FLAGS[flag].value is not None}
    if "determinism" in overrides:
        overrides["determinism"] = overrides["determinism"] == "on"
    if FLAGS.model_args:
        overrides["model_args"] = parse_model_args(FLAGS.model_args)
    return overrides


def config_from_flags() -> config_lib.TrialConfig:
    """The config the flags name: a benchmark's with the flags given applied, or, for your own model with no
    --benchmark, the config defaults with the flags applied."""
    overrides = config_overrides()
    user_model = overrides.get("model") not in (None, *config_lib.MODELS)
    if user_model:
        given = [name for name in config_lib.BUILTIN_MODEL_FIELDS if name in overrides]
        if given:
            raise UsageError(f"--{given[0]} shapes the built-in models; set it in your model function "
                             "(e.g. through --model_args).")
    if user_model and not FLAGS["benchmark"].present:
        return config_lib.user_model_config(**overrides)
    return config_lib.load_benchmark(FLAGS.benchmark, **overrides)


def parse_model_args(values: list[str]) -> dict[str, Any]:
    """--model_args values: JSON objects, or NAME=VALUE with VALUE read as JSON where it parses."""
    parsed: dict[str, Any] = {}
    for value in values:
        text = value.strip()
        if text.startswith("{"):
            try:
                document = strict_json_loads(text)
            except NotStrictJson as error:
                raise UsageError(f"--model_args holds {error}.") from None
            except json.JSONDecodeError as error:
                raise UsageError(f"--model_args {text!r} is not a valid JSON object ({error.msg}).") from None
            parsed.update(document)
            continue
        name, equals, raw = text.partition("=")
        if not equals or not name.strip().isidentifier():
            raise UsageError(f"--model_args takes a JSON object or NAME=VALUE, got {value!r}.")
        try:
            parsed[name.strip()] = strict_json_loads(raw)
        except NotStrictJson as error:  # NaN, 1e999, nesting deeper than Python recurses: not a value to pass on
            raise UsageError(f"--model_args {name.strip()}=... holds {error}.") from None
        except json.JSONDecodeError:
            parsed[name.strip()] = raw
    return parsed


def seeds_from_flags() -> SeedSet:
    try:
        return SeedSet.from_base(FLAGS.seed, **{s: FLAGS[f"{s}_seed"].value for s in SOURCES})
    except ValueError as error:
        raise UsageError(str(error)) from None
