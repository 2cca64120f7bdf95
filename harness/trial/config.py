"""The effective configuration of a trial, and named benchmark definitions.

A benchmark (a module in `benchmarks/`) names a dataset, a model and training
settings; flags given on the command line override single fields. The result
is a frozen `TrialConfig`: everything a trial needs besides its seeds.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import numbers
import pkgutil
from typing import Any

from harness.errors import UsageError

# What `make bench` and every program run when no --benchmark is given (benchmarks/mnist1d_mlp.py says why).
DEFAULT_BENCHMARK = "mnist1d_mlp"
# The built-in models (harness/trial/models.py). Any other model is a user's Keras model, named by a
# spec: `path/to/file.py:function` or `package.module:function` (harness/trial/user_code.py).
MODELS = ("mlp", "regression", "cnn", "embedding", "sparse")
# "mirrored": tf.distribute.MirroredStrategy over every local GPU (or logical CPU device).
STRATEGIES = ("none", "mirrored")
# The harness loop (train.py), or the user's own model.fit (train.fit_with_keras).
TRAINERS = ("harness", "keras_fit")
XLA_UPDATE_CHOICES = ("auto", "on", "off")
# The most an integer field may hold. They become TF int32 settings and seeds, and int64 step counts (epochs
# times steps per epoch); past this they overflow inside TF, which says so in a failed trial or a traceback.
MAX_INT = 2**31 - 1
# The built-in models are the question's small networks; wider is refused from the config, before a weight is
# drawn (planning a study builds the model to count them). 2**20 hidden units already make the MLP on MNIST's
# 784 pixels 0.8 billion weights, 13 GB with their gradients and Adam's two moments.
MAX_HIDDEN_UNITS = 2**20
# TF starts every thread of its pools up front; more than any machine has cores.
MAX_THREADS = 4096
# Blocks per setting of the interleaved measurement of determinism's cost (trial/cost.py): the default, the
# fewest (fewer paired samples give an interval too wide to say anything) and the most a study may ask for.
# Here, not in cost.py, which imports TensorFlow: bench's --cost_blocks states its default without it.
DEFAULT_COST_BLOCKS = 16  # blocks per setting in each of COST_UNITS units
COST_UNITS = 3
MIN_COST_BLOCKS = 8
MAX_COST_BLOCKS = 1000
# Integer fields with a bound of their own, below MAX_INT.
_MOST = {"hidden_units": MAX_HIDDEN_UNITS, "intra_op_threads": MAX_THREADS, "inter_op_threads": MAX_THREADS}


@dataclasses.dataclass(frozen=True)
class TrialConfig:
    """Everything that defines a trial except its seeds."""

    benchmark: str
    # A built-in name, tfds:NAME, npz:PATH, csv:PATH, or a function spec returning arrays (harness/trial/user_data.py).
    dataset: str = "digits"
    data_dir: str | None = None
    # csv data only: the column holding the label (empty: the last column).
    label_column: str = ""
    # Examples of the training pool used, 0 for all: keeps tests and quick
    # runs small without changing the data set's definition.
    max_train_examples: int = 0
    # Share of the training pool held out for validation, chosen by the
    # `split` seed. 0 means no validation set and the split seed is unused.
    validation_fraction: float = 0.0
    augment: bool = False
    model: str = "mlp"
    # Keyword arguments of a user's model function, e.g. {"units": 64} (JSON values).
    model_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Built-in models only: a user's model has its own layers.
    hidden_units: int = 128
    dropout_rate: float = 0.8
    epochs: int = 10
    batch_size: int = 32
    # None: a compiled user model keeps its optimizer's own learning rate.
    learning_rate: float | None = 1e-3
    # A user model not compiled trains with these Keras names (e.g. adam, sparse_categorical_crossentropy);
    # empty: from the model's compile(), else Adam and a loss chosen from the data.
    optimizer: str = ""
    loss: str = ""
    # Keras's fit(class_weight=...): each training example's loss weighted by its class's weight (1 for a class
    # not named), as canonical JSON {"CLASS": WEIGHT} (`class_weights` reads it back); empty: no class weights.
    # A record holds it only when set (as_dict), so studies that do not use it keep their ids.
    class_weight: str = ""
    steps_per_loop: int = 50
    # Implementation sources of variation (not seeds).
    determinism: bool = True
    xla: bool = False
    # A user model's Keras optimizer update XLA-compiled on its own, so its elementwise ops run as
    # fused kernels (the built-ins' Adam is one fused ResourceApplyAdam): on, off (op by op, as
    # Keras's fit runs it on a CPU), or auto (on for models big enough to gain, keras_model.py).
    # It changes the bits, not whether they repeat.
    xla_update: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    # Flat index of the initial weight whose lowest mantissa bit is flipped
    # (Summers & Dinneen 2021); -1 flips nothing.
    flip_bit: int = -1
    # The seed of a per-step permutation of the batch's examples, so every sum over the batch in the train
    # step (the loss's mean, each weight gradient's accumulation) adds its terms in another order: equal
    # in exact arithmetic, different in floating point, as GPU atomics are (the `order` condition). Dropout
    # masks follow their examples. -1: the batch's own order.
    reduction_order: int = -1
    strategy: str = "none"
    # Who runs the training steps: the harness's tf.function loop, or the user's own Keras `fit`
    # (their compile(); the harness's seeds, data pipeline and evaluation). keras_fit: user models.
    trainer: str = "harness"
    # Trials trained together as vectorized replicas (harness/trial/vectorized.py); 1: alone. A replica's
    # bits are its trial's alone (tested on CPU; `harness.rerun` checks anywhere), but this says how it ran,
    # so it is part of the trial key: a study resumed with another --replicas reruns its trials.
    replicas: int = 1
    # The `resume` condition's trials (harness/trial/resume.py): train to the end of this epoch, write a checkpoint
    # of the whole training state, and finish in a fresh process restored from it. 0: train uninterrupted. Held in
    # a record only when set (as_dict), so studies without `resume` keep their ids.
    resume_epoch: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.class_weight, dict):  # the Python API's {0: 1.0, 1: 5.0}, as Keras's fit takes it
            object.__setattr__(self, "class_weight", canonical_class_weight(self.class_weight))
        self._check()

    @property
    def batch_order_seed(self) -> int | None:
        """The seed that permutes each batch (the `order` condition), or None: what Trainable.reduction_order holds."""
        return self.reduction_order if self.reduction_order >= 0 else None

    @property
    def is_user_model(self) -> bool:
        return self.model not in MODELS

    def _check(self) -> None:
        self._check_types()
        if self.is_user_model and ":" not in self.model:
            raise UsageError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}, or name your own "
                             "Keras model as path/to/file.py:function or package.module:function.")
        if not self.is_user_model and (self.model_args or self.optimizer or self.loss or self.xla_update != "auto"):
            raise UsageError("--model_args, --optimizer, --loss and --xla_update are for your own Keras model, not "
                             f"the built-in {self.model!r}.")
        if not self.is_user_model and self.learning_rate is None:
            raise UsageError(f"the built-in model {self.model!r} needs a --learning_rate.")
        positive = ("epochs", "batch_size", "steps_per_loop", "hidden_units", "replicas")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise UsageError(f"--dropout_rate must be in [0, 1), got {self.dropout_rate}.")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise UsageError(
                f"--validation_fraction must be in [0, 1), got {self.validation_fraction}."
            )
        if self.learning_rate is not None and not 0 < self.learning_rate < math.inf:
            raise UsageError(f"--learning_rate must be positive and finite, got {self.learning_rate}.")
        for name in ("max_train_examples", "intra_op_threads", "inter_op_threads"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name} must be 0 or more, got {getattr(self, name)}.")
        for name in (f.name for f in dataclasses.fields(self) if f.type == "int"):
            most = _MOST.get(name, MAX_INT)
            if getattr(self, name) > most:
                raise UsageError(f"--{name} must be at most {most:,}, got {_said(getattr(self, name))}.")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        if self.strategy != "none" and self.xla:
            raise UsageError("--xla with a tf.distribute strategy is not supported by the harness loop.")
        if self.xla_update not in XLA_UPDATE_CHOICES:
            raise UsageError(f"unknown --xla_update {self.xla_update!r}; choose one of "
                             f"{', '.join(XLA_UPDATE_CHOICES)}.")
        if self.trainer not in TRAINERS:
            raise UsageError(f"unknown trainer {self.trainer!r}; choose one of {', '.join(TRAINERS)}.")
        if self.trainer == "keras_fit" and not self.is_user_model:
            raise UsageError("--trainer=keras_fit trains your own Keras model (--model=file.py:function); the "
                             f"built-in {self.model!r} trains in the harness loop.")
        if self.trainer == "keras_fit" and self.xla:
            raise UsageError("--trainer=keras_fit compiles as the model's compile() says; --xla is for the "
                             "harness loop.")
        if self.strategy != "none" and self.is_user_model:
            raise UsageError("--strategy=mirrored trains the built-in models; a user's Keras model trains alone.")
        if self.flip_bit < -1:
            raise UsageError(f"--flip_bit must be -1 (off) or a weight index, got {self.flip_bit}.")
        if self.reduction_order < -1:
            raise UsageError(f"--reduction_order must be -1 (off) or a seed, got {self.reduction_order}.")
        if self.class_weight:
            object.__setattr__(self, "class_weight", canonical_class_weight(self.class_weight))
        if self.resume_epoch < 0:
            raise UsageError(f"--resume_epoch must be 0 (the middle epoch) or more, got {self.resume_epoch}.")
        if self.resume_epoch and not 0 < self.resume_epoch < self.epochs:
            raise UsageError(f"--resume_epoch must stop training before its last epoch: from 1 to {self.epochs - 1} "
                             f"for --epochs={self.epochs}, got {self.resume_epoch}.")
        if self.resume_epoch and self.strategy != "none":
            raise UsageError("the `resume` condition checkpoints one model's state; --strategy=mirrored spreads it "
                             "over devices.")
        if self.reduction_order >= 0 and self.trainer == "keras_fit":
            raise UsageError("the `order` condition reorders the sums of the harness's train step; Keras fit "
                             "runs its own (use --trainer=harness).")

    def _check_types(self) -> None:
        """Each field of the type its flag parses to: a config from Python (harness.study's settings), a --params
        file or a spec is refused in one sentence, not a TypeError deep in a comparison or in TensorFlow."""
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), field.type.removesuffix(" | None")
            if value is None and field.type.endswith("| None"):
                continue
            wanted = {"int": "a whole number", "float": "a number", "bool": "True or False", "str": "a str"}.get(
                kind, "a dict of the model function's keyword arguments")
            fits = {"int": isinstance(value, numbers.Integral), "float": isinstance(value, numbers.Real),
                    "bool": True, "str": isinstance(value, str)}.get(kind, isinstance(value, dict))
            if not fits or isinstance(value, bool) != (kind == "bool"):
                raise UsageError(f"--{field.name} must be {wanted}, got {said_value(value)}.")

    def replace(self, **changes: Any) -> TrialConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        # Fields added after the first studies are held only when set: a study that does not use them keeps
        # its study id and trial keys (both hash this dict), and so its records.
        for name in _HELD_WHEN_SET:
            if not fields[name]:
                del fields[name]
        return fields

    def class_weights(self) -> dict[int, float]:
        """--class_weight as Keras's fit takes it: {class: weight}; {} when not set."""
        return {int(key): float(value) for key, value in json.loads(self.class_weight).items()} \
            if self.class_weight else {}

    def __hash__(self) -> int:
        # model_args is a dict; configs are equal when their JSON is, so hash that.
        return hash(json.dumps(self.as_dict(), sort_keys=True))


CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TrialConfig))
# Config fields a record holds only when set (TrialConfig.as_dict).
_HELD_WHEN_SET = ("class_weight", "resume_epoch")
# Fields that shape the built-in models only; a user's model is shaped by its own function.
BUILTIN_MODEL_FIELDS = ("hidden_units", "dropout_rate")


def canonical_class_weight(value: Any) -> str:
    """Class weights as a config holds them: a JSON object of whole-number classes (as strings, sorted) to
    finite weights of 0 or more, from a dict ({0: 1.0, 1: 5.0}) or its JSON text; one sentence on anything
    else. Canonical, so one setting has one study id however it was written."""
    said = "--class_weight takes a JSON object of class to weight, e.g. '{\"0\": 1, \"1\": 5}'"
    given = value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict) or not value:
        raise UsageError(f"{said}, not {said_value(given)}.")
    weights = {}
    for key, weight in value.items():
        text = str(key).strip()
        if isinstance(key, bool) or not text.isdigit():
            raise UsageError(f"{said}: its class {said_value(key)} is not a class index (0, 1, 2...).")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0 <= weight < math.inf:
            raise UsageError(f"{said}: class {int(text)}'s weight must be a finite number of 0 or more, got "
                             f"{said_value(weight)}.")
        if int(text) > MAX_INT:
            raise UsageError(f"{said}: class {said_value(int(text))} is past the classes a label can name.")
        weights[int(text)] = float(weight)
    return json.dumps({str(key): weights[key] for key in sorted(weights)}, separators=(",", ":"))


def said_value(value: Any) -> str:
    """A value a user gave, as a message says it: a number as `_said` says it, anything else as Python shows it,
    cut at 60 characters (a 10,000-element list pasted by mistake)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
        return _said(number) if number >= 0 else "-" + _said(-number)
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _said(number: int) -> str:
    """A number as a message says it: in full, or past 20 digits how many it has (a pasted 4,000-digit one)."""
    if number < 10**20:
        return str(number)
    digits = int(math.log10(number)) + 1
    if 10 ** (digits - 1) > number:  # log10 in floats rounds 99...9 up to the next power of ten
        digits -= 1
    return f"a {digits}-digit number"


def benchmark_names() -> list[str]:
    """Names of the benchmark definitions: the top-level modules of `benchmarks/`.

    Found by listing, not importing: subpackages (like `benchmarks/baselines/`) are not definitions.
    """
    import benchmarks

    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                  if not m.ispkg and not m.name.startswith("_"))


def user_model_config(model: str, **overrides: Any) -> TrialConfig:
    """The config of a study of a user's model with no benchmark named: the config's own defaults,
    the compiled optimizer's learning rate, and a name taken from the model spec."""
    fields = {"learning_rate": None, **overrides, "model": model}
    return TrialConfig(benchmark=user_benchmark_name(model), **fields)


def user_benchmark_name(model: str) -> str:
    """`examples/mnist_mlp.py:create_model` -> `mnist_mlp.create_model`: readable, and safe as a directory name."""
    where, _, function = model.rpartition(":")
    stem = where.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{stem}.{function}"


def load_benchmark(name: str, **overrides: Any) -> TrialConfig:
    """The benchmark's config with `overrides` (fields set on the command line) applied."""
    names = benchmark_names()
    if name not in names:
        raise UsageError(f"unknown benchmark {name!r}; choose one of {', '.join(names)}.")
    module = importlib.import_module(f"benchmarks.{name}")
    if not callable(getattr(module, "get_config", None)):
        raise UsageError(f"benchmarks/{name}.py has no get_config(); it is not a benchmark definition.")
    fields = module.get_config()
    unknown = (set(fields) | set(overrides)) - set(CONFIG_FIELDS)
    if unknown:
        raise UsageError(f"benchmark {name!r} sets unknown fields: {', '.join(sorted(unknown))}.")
    fields.update(overrides)
    return TrialConfig(benchmark=name, **fields)
