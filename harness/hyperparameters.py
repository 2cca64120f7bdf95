"""Hyperparameters: named config fields, read from JSON files, and the tuner's search space.

A hyperparameter is a `TrialConfig` field (learning_rate, dropout_rate,
hidden_units, ...), so a tuned configuration is an ordinary config and its
trials are ordinary trial records with the hyperparameters in `config`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

from harness.config import TrialConfig
from harness.errors import UsageError

# Fields a tuner may set, with their types. The rest of a config (dataset, determinism, ...)
# describes the experiment, not the candidate.
TUNABLE = {"learning_rate": float, "dropout_rate": float, "hidden_units": int, "batch_size": int,
           "epochs": int}
DEFAULT_SPACE = "learning_rate=1e-4..3e-2:log,dropout_rate=0..0.9,hidden_units=16..256:log"


def check_params(params: dict[str, Any], source: str) -> dict[str, Any]:
    """Hyperparameters as config fields of the right type; one sentence on anything else."""
    unknown = sorted(set(params) - set(TUNABLE))
    if unknown:
        raise UsageError(f"{source} names {', '.join(map(repr, unknown))}, which the harness cannot set; "
                         f"hyperparameters are {', '.join(TUNABLE)}")
    checked = {}
    for name, value in params.items():
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
    """`learning_rate=0.01,augment=false` as config values, typed like the config's fields."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrialConfig)}
    values = {}
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        name, equals, value = (x.strip() for x in part.partition("="))
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
        document = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{path} is not valid JSON") from None
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

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this dimension."""
        kind = TUNABLE[self.name]
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
        if name not in TUNABLE:
            raise UsageError(f"--space names {name!r}; hyperparameters are {', '.join(TUNABLE)}")
        if any(d.name == name for d in dimensions):
            raise UsageError(f"--space names {name} twice")
        kind = TUNABLE[name]
        try:
            if "|" in spec:
                dimensions.append(Dimension(name, choices=tuple(kind(v) for v in spec.split("|"))))
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
        dimensions.append(Dimension(name, low, high, log))
    if not dimensions:
        raise UsageError("--space is empty; name at least one hyperparameter range")
    return dimensions


def check_space(dimensions: list[Dimension], base: TrialConfig) -> None:
    """Every value the space can draw gives a valid config (checked at its ends), before any training."""
    for dimension in dimensions:
        values = dimension.choices or (dimension.low, dimension.high)
        for value in values:
            base.replace(**{dimension.name: TUNABLE[dimension.name](value)})  # The config's checks say why.
