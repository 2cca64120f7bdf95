"""Hyperparameters: named config fields, read from JSON files, and the tuner's search space.

A hyperparameter is, for your own Keras model, an argument of its function
under the name the function gives it (`units`, as an Optuna study of it
stores it; `model_args.units` says the same), or a `TrialConfig` field the
function does not take (learning_rate, batch_size, epochs); for a built-in
benchmark, one of its config fields (learning_rate, dropout_rate,
hidden_units, ...). So a tuned configuration is an ordinary config and its
trials are ordinary trial records with the hyperparameters in `config`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.studies.records import load_document
from harness.trial import user_code
from harness.trial.config import BUILTIN_MODEL_FIELDS, CONFIG_FIELDS, TrialConfig
from harness.tuning.optuna_storage import HARNESS_ATTR

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


def model_arguments(base: TrialConfig) -> tuple[list[str], bool]:
    """(the named arguments of a user's model function, whether it also takes **kwargs)."""
    function = user_code.resolve_function(base.model, "model")
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return [], True  # no signature to read: let the call say
    named = [p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return named, any(p.kind == p.VAR_KEYWORD for p in parameters)


def placement(base: TrialConfig, names: list[str], source: str = "hyperparameters") -> dict[str, tuple[str, str]]:
    """Where each hyperparameter goes: ("model_args", ARG) for an argument of the user's model function (its
    own name, or model_args.ARG), ("field", NAME) for a config field. For your own model, a name the function
    takes is its argument even where a config field has the name too (`learning_rate`): the function is what
    the tuner set. One sentence naming what can be set, for a name nothing takes."""
    arguments, takes_any = model_arguments(base) if base.is_user_model else ([], False)
    placed, unknown = {}, []
    for name in names:
        if is_model_arg(name):
            placed[name] = ("model_args", name[len(MODEL_ARG):])
        elif base.is_user_model and (name in arguments or (takes_any and name not in CONFIG_FIELDS)):
            placed[name] = ("model_args", name)
        elif name in CONFIG_FIELDS and not (base.is_user_model and name in BUILTIN_MODEL_FIELDS):
            placed[name] = ("field", name)
        else:
            unknown.append(name)
    if unknown:
        names_said = ", ".join(map(repr, unknown))
        if base.is_user_model:
            listed = ", ".join(a for a in arguments if a != "seed") or "none"
            raise UsageError(f"{source} names {names_said}, which {base.model} does not take (its arguments: "
                             f"{listed}) and the harness does not set (it sets {', '.join(_HARNESS_SET)})")
        raise UsageError(f"{source} names {names_said}, which the built-in model of benchmark {base.benchmark!r} "
                         f"does not take; its hyperparameters are {', '.join(TUNABLE)} (for your own model pass "
                         "--model=FILE.py:FUNCTION, for your own Optuna objective --objective=FILE.py:FUNCTION)")
    return placed


# What the harness sets on any model: its training loop's settings.
_HARNESS_SET = ("learning_rate", "batch_size", "epochs")


def configured(base: TrialConfig, params: dict[str, Any], source: str = "hyperparameters") -> TrialConfig:
    """`base` with the hyperparameters set (see `placement`): arguments of the model function over the base's
    own arguments, config fields of their type. One sentence where they do not fit the model."""
    fields, model_args = {}, {}
    for name, (where, key) in placement(base, list(params), source).items():
        if where == "model_args":
            model_args[key] = params[name]
        else:
            fields[key] = _field_value(key, params[name], source)
    if model_args:
        fields["model_args"] = {**base.model_args, **model_args}
    return base.replace(**fields)


def _field_value(name: str, value: Any, source: str) -> Any:
    kind = TUNABLE.get(name)
    if kind is None:
        return value
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not whole):
        raise UsageError(f"{source}: {name} must be {'a whole number' if kind is int else 'a number'}, got {value!r}")
    try:
        return kind(value)
    except OverflowError:  # an integer of hundreds of digits, which JSON has and no float holds
        raise UsageError(f"{source}: {name} is a number too large for a float ({len(str(value))} digits)") from None


def check_params(params: dict[str, Any], source: str) -> dict[str, Any]:
    """Hyperparameters as a tuner stores them: names, each with a number, a string or true/false (what they
    set is decided against the model, by `configured`); one sentence on anything else."""
    checked = {}
    for name, value in params.items():
        if not isinstance(name, str) or not (name.isidentifier() or is_model_arg(name)):
            raise UsageError(f"{source}: {name!r} is not a parameter name")
        if not isinstance(value, (bool, int, float, str)):
            raise UsageError(f"{source}: {name} must be a number, a string or true/false, got {value!r}")
        checked[name] = _field_value(name, value, source) if name in TUNABLE else value
    return checked


# Set by the study condition `all` (op determinism off) or by the harness itself, never per candidate.
_FIXED_FIELDS = ("benchmark", "replicas", "determinism")


def parse_assignments(text: str, source: str) -> dict[str, Any]:
    """`learning_rate=0.01,augment=false,units=64` as values: config fields typed like the config's fields,
    any other name (an argument of your model function, `units` or `model_args.units`) read as JSON where it
    parses; `configured` decides what each sets."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    values = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, equals, value = (x.strip() for x in part.partition("="))
        if equals and name not in defaults and (name.isidentifier() or is_model_arg(name)):
            try:
                values[name] = json.loads(value)
            except json.JSONDecodeError:
                values[name] = value
            continue
        if not equals or name not in defaults:
            raise UsageError(f"{source}: cannot read {part!r}; write NAME=VALUE with NAME a config field "
                             f"such as {', '.join(TUNABLE)}, or an argument of your model function")
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


@dataclasses.dataclass(frozen=True)
class TunedFile:
    """What a JSON file of hyperparameters holds: the hyperparameters, the tuned value (None for none), and
    for a file harness.tune wrote, the study's settings (its config and metric: what measured the value)
    and the mean over the candidate's tuning seeds."""

    params: dict[str, Any]
    value: float | None = None
    settings: dict[str, Any] | None = None
    mean: float | None = None


def params_from_json(path: str) -> TunedFile:
    """The hyperparameters (and tuned value) a JSON file holds.

    Either a flat object of hyperparameters, `{"learning_rate": 0.003}`, or an
    Optuna-trial-shaped one, `{"params": {...}, "value": 0.97}`, whose value
    is the score the tuner reported. A file harness.tune wrote also holds the
    study's settings (`"harness": {...}`) and the candidate's `mean`.
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
        settings, mean = document.get(HARNESS_ATTR), document.get("mean")
        return TunedFile(check_params(document["params"], path), value,
                         settings if isinstance(settings, dict) else None,
                         mean if isinstance(mean, (int, float)) and not isinstance(mean, bool) else None)
    return TunedFile(check_params(document, path))


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
        if not (name.isidentifier() or is_model_arg(name)):
            raise UsageError(f"--space: cannot read {part!r}; write NAME=LOW..HIGH, NAME=LOW..HIGH:log or "
                             "NAME=A|B|C with NAME a hyperparameter")
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
    """Every name is a hyperparameter of this model and every value the space can draw gives a valid config
    (checked at its ends), before any training."""
    placement(base, [d.name for d in dimensions], "--space")
    for dimension in dimensions:
        values = dimension.choices or (dimension.low, dimension.high)
        for value in values:
            configured(base, {dimension.name: dimension.kind(value)}, "--space")  # The config's checks say why.
