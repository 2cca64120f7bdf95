"""Keras callbacks for your own `model.fit`: fingerprints that `harness.diverge` compares.

    from harness.keras import FingerprintCallback
    model.fit(x, y, epochs=20, callbacks=[FingerprintCallback("run_a.jsonl")])
    # ... run again into run_b.jsonl, then:
    python -m harness.diverge --traces=run_a.jsonl,run_b.jsonl

Writes a trace as JSON lines (`harness.trace/1`): a header with every trainable
variable's fingerprint before training, then one line per epoch (default) or
per step (`every="step"`) with the loss Keras reports and every variable's
fingerprint after it, then the final weights' SHA-256. `harness.diverge` names
the first epoch (or step) and variable where two runs differ. A fit cannot see
gradients, so the stage it names is the weights after the step, not the
backward pass; the harness's own traced loop (`harness.diverge` without
--traces) goes down to gradients.

Cost (`make speed` measures it on the examples' MLP, next to plain fit): per
epoch, a hash of the weights once an epoch and nothing per step; per step, a
hash every step, and fit then waits for each step (a batch hook turns off
Keras's asynchronous dispatch).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import keras
import numpy as np

from harness.schema import TRACE_SCHEMA
from harness.trial.fingerprints import weights_sha256


def fingerprint(value: Any) -> str:
    """16 hex digits of the SHA-256 of an array's bytes (a uint64 in a trace)."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(value)).tobytes()).hexdigest()[:16]


class FingerprintCallback(keras.callbacks.Callback):
    """Writes a `harness.trace/1` JSON-lines trace of a fit to `path` (replacing it).

    Per epoch it defines no batch hook, so Keras keeps dispatching steps asynchronously (a batch hook,
    even an empty one, makes fit wait for every step); `every="step"` gives the subclass that has one.
    """

    def __new__(cls, path: str | Path = "", every: str = "epoch") -> FingerprintCallback:
        if cls is FingerprintCallback and every == "step":
            return super().__new__(_StepFingerprints)
        return super().__new__(cls)

    def __init__(self, path: str | Path, every: str = "epoch") -> None:
        super().__init__()
        if every not in ("epoch", "step"):
            raise ValueError(f"every must be 'epoch' or 'step', not {every!r}")
        self.path, self.every = Path(path), every
        self._step = 0

    def _write(self, document: dict[str, Any]) -> None:
        self._file.write(json.dumps(document) + "\n")

    def _row(self, unit: str, index: int, logs: dict[str, Any] | None) -> dict[str, Any]:
        loss = (logs or {}).get("loss")
        return {unit: index, "loss": None if loss is None else struct.pack(">d", float(loss)).hex(),
                "updated": [fingerprint(v) for v in self.model.trainable_variables]}

    def on_train_begin(self, logs: Any = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w")
        variables = self.model.trainable_variables
        self._write({"schema": TRACE_SCHEMA, "every": self.every, "variables": [v.path for v in variables],
                     "layers": list(dict.fromkeys(v.path.rsplit("/", 1)[0] for v in variables)),
                     "initial": [fingerprint(v) for v in variables]})

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if self.every == "epoch":
            self._write(self._row("epoch", epoch, logs))

    def on_train_end(self, logs: Any = None) -> None:
        # Every variable, trainable and not (BatchNorm's moving statistics), as a trial's weights_sha256.
        self._write({"weights_sha256": weights_sha256(self.model.weights)})
        self._file.close()


class _StepFingerprints(FingerprintCallback):
    """FingerprintCallback(every="step"): a line after every train step."""

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._write(self._row("step", self._step, logs))
        self._step += 1
