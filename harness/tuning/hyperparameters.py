"""Hyperparameters: named config fields, read from JSON files, and the tuner's search space.

A hyperparameter is a `TrialConfig` field (learning_rate, dropout_rate,
hidden_units, ...) or, for your own Keras model, an argument of its function
(`model_args.units`), so a tuned configuration is an ordinary config and its
trials are ordinary trial records with the hyperparameters in `config`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.studies.records import load_document
from harness.trial.config import BUILTIN_MODEL_FIELDS, TrialConfig

# Fields a tuner may set, with their types. The rest of a config (dataset, determinism, ...)
# describes the experiment, not the candidate.
TUNABLE = {"learning_rate": float, "dropout_rate": float, "hidden_units": int, "batch_size": int,
           "epochs": int}
DEFAULT_SPACE = "learning_rate=1e-4..3e-2:log,dropout_rate=0..0.9,hidden_units=16..256:log"
# A user's model is shaped by its function, whose arguments the harness does not know: by default
# only the optimizer's rate is tuned (over the compiled optimizer's own); name arguments to tune more.
USER_MODEL_SPACE = "learning_rate=1e-4..3e-2:log"
# `model_args.units`: the argument `units` of a user's model function.
MODEL_ARG = "model_args."


def default_space(base: TrialConfig) -> str:
    return USER_MODEL_SPACE if base.is_user_model else DEFAULT_SPACE


def is_model_arg(name: str) -> bool:
    return name.startswith(MODEL_ARG) and name[len(MODEL_ARG):].isidentifier()


def configured(base: TrialConfig, params: dict[str, Any]) -> TrialConfig:
    """`base` with the hyperparameters set: config fields as they are, `model_args.NAME` as an argument of
    the model function (over the base's own arguments). One sentence where they do not fit the model."""
    shaping = [name for name in params if name in BUILTIN_MODEL_FIELDS]
    if base.is_user_model and shaping:
        raise UsageError(f"{shaping[0]} shapes the built-in models; for your own model tune an argument of its "
                         f"function instead, e.g. model_args.units=16..256:log")
    fields = {name: value for name, value in params.items() if not is_model_arg(name)}
    model_args = {name[len(MODEL_ARG):]: value for name, value in params.items() if is_model_arg(name)}
    if model_args:
        fields["model_args"] = {**base.model_args, **model_args}
    return base.replace(**fields)


def check_params(params: dict[str, Any], source: str) -> dict[str, Any]:
    """Hyperparameters as config fields of the right type; one sentence on anything else."""
    unknown = sorted(name for name in params if name not in TUNABLE and not is_model_arg(name))
    if unknown:
        raise UsageError(f"{source} names {', '.join(map(repr, unknown))}, which the harness cannot set; "
                         f"hyperparameters are {', '.join(TUNABLE)} and model_args.NAME")
    checked = {}
    for name, value in params.items():
        if is_model_arg(name):  # The model function says what it accepts; JSON scalars pass through.
            if not isinstance(value, (bool, int, float, str)):
                raise UsageError(f"{source}: {name} must be a number, a string or true/false, got {value!r}")
            checked[name] = value
            continue
        kind = TUNABLE[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and float(value) != int(value)):
            raise UsageError(f"{source}: {name} must be {'a whole number' if kind is int else 'a number'}, "
                             f"got {value!r}")
        checked[name] = kind(value)
    return checked


# Set by the study condition `all` (op determinism off) or by the harness itself, never per candidate.
_FIXED_FIELDS = ("benchmark", "replicas", "determinism")


def parse_assignments(text: str, source: str) -> dict[str, Any]:
    """`learning_rate=0.01,augment=false,model_args.units=64` as config values, typed like the config's
    fields."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    values = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, equals, value = (x.strip() for x in part.partition("="))
        if equals and is_model_arg(name):  # An argument of the model function: JSON where it parses.
            try:
                values[name] = json.loads(value)
            except json.JSONDecodeError:
                values[name] = value
            continue
        if not equals or name not in defaults:
            raise UsageError(f"{source}: cannot read {part!r}; write NAME=VALUE with NAME a config field "
                             f"such as {', '.join(TUNABLE)}")
        if name in _FIXED_FIELDS:
            raise UsageError(f"{source}: {name} cannot differ between compared configurations")
        values[name] = _typed(name, value, defaults[name], source)
    return values


def _typed(name: str, text: str, default: Any, source: str) -> Any:
    kind = TUNABLE.get(name) or (str if default is None else type(default))
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"{source}: {name} must be true or false, got {text!r}")
        return text.lower() in ("true", "1")
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{source}: {name} must be {'a whole number' if kind is int else 'a number'}, "
                         f"got {text!r}") from None


def params_from_json(path: str) -> tuple[dict[str, Any], float | None]:
    """(hyperparameters, tuned score or None) from a JSON file.

    Either a flat object of hyperparameters, `{"learning_rate": 0.003}`, or an
    Optuna-trial-shaped one, `{"params": {...}, "value": 0.97}`, whose value
    is the score the tuner reported.
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        document = load_document(file.read_bytes(), path)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path} must hold a JSON object of hyperparameters")
    if "params" in document:
        value = document.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UsageError(f"{path}: value must be a number, got {value!r}")
        if not isinstance(document["params"], dict):
            raise UsageError(f"{path}: params must be a JSON object")
        return check_params(document["params"], path), value
    return check_params(document, path), None


def describe(params: dict[str, Any]) -> str:
    """`learning_rate=0.003, hidden_units=64`: short and exact enough to retype."""
    return ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in params.items()) or "the benchmark's own values"


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range (low..high, optionally log-scaled) or list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    kind: type = float

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this dimension."""
        kind = self.kind
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


_RANGE = re.compile(r"(?P<low>[^.:][^:]*?)\.\.(?P<high>[^:]+?)(?P<log>:log)?")


def parse_space(text: str) -> list[Dimension]:
    """`learning_rate=1e-4..1e-1:log,dropout_rate=0..0.9,hidden_units=32|64|128`: one sentence on bad input."""
    dimensions = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, _, spec = part.partition("=")
        name = name.strip()
        if name not in TUNABLE and not is_model_arg(name):
            raise UsageError(f"--space names {name!r}; hyperparameters are {', '.join(TUNABLE)} and "
                             "model_args.NAME (an argument of your model function)")
        if any(d.name == name for d in dimensions):
            raise UsageError(f"--space names {name} twice")
        kind = TUNABLE.get(name) or _model_arg_kind(spec)
        try:
            if "|" in spec:
                dimensions.append(Dimension(name, choices=tuple(kind(v.strip()) for v in spec.split("|")),
                                            kind=kind))
                continue
            match = _RANGE.fullmatch(spec.strip())
            if not match:
                raise ValueError
            low, high = float(match.group("low")), float(match.group("high"))
        except ValueError:
            raise UsageError(f"--space: cannot read {part!r}; write NAME=LOW..HIGH, NAME=LOW..HIGH:log "
                             "or NAME=A|B|C") from None
        log = bool(match.group("log"))
        if not (math.isfinite(low) and math.isfinite(high) and low < high) or (log and low <= 0) or \
                (kind is int and (low != int(low) or high != int(high))):
            raise UsageError(f"--space: {part!r} is not a usable range; it needs LOW < HIGH, LOW > 0 with :log, "
                             "and whole numbers for integer hyperparameters")
        dimensions.append(Dimension(name, low, high, log, kind=kind))
    if not dimensions:
        raise UsageError("--space is empty; name at least one hyperparameter range")
    return dimensions


def _model_arg_kind(spec: str) -> type:
    """A model argument's type, read off its range or choices: whole numbers are ints (`16..256`, `32|64`),
    other numbers floats, anything else (`relu|tanh`) strings."""
    texts = [t.strip() for t in re.split(r"\.\.|\||:log", spec) if t.strip()]
    if texts and all(re.fullmatch(r"[+-]?\d+", t) for t in texts):
        return int
    try:
        [float(t) for t in texts]
    except ValueError:
        return str
    return float


def check_space(dimensions: list[Dimension], base: TrialConfig) -> None:
    """Every value the space can draw gives a valid config (checked at its ends), before any training."""
    for dimension in dimensions:
        values = dimension.choices or (dimension.low, dimension.high)
        for value in values:
            configured(base, {dimension.name: dimension.kind(value)})  # The config's checks say why.
