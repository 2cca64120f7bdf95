"""SHA-256 fingerprints: the bitwise answer to "did these two runs give the same result?".

One place defines how weights, predictions and loss traces are hashed, so
fingerprints from any two records are comparable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

# Every fingerprint an ok trial's record holds (harness/trial/train.py:trial_result), in the order a run makes them.
TRIAL_FINGERPRINTS = ("initial_weights_sha256", "weights_sha256", "predictions_sha256", "loss_trace_sha256")


def weights_sha256(variables: Iterable[tf.Variable]) -> str:
    """Hash of every variable's name, dtype, shape and raw bytes, in the model's order."""
    return named_arrays_sha256((variable_name(variable), np.asarray(variable.numpy())) for variable in variables)


def weights_sha256_by_position(variables: Iterable[tf.Variable]) -> str:
    """`weights_sha256` with each variable named by its position, not its path: two equal models built in one
    process (whose layers Keras names `sequential/dense`, then `sequential_1/dense_1`) hash alike."""
    return named_arrays_sha256((str(index), np.asarray(variable.numpy())) for index, variable in enumerate(variables))


def variable_name(variable: tf.Variable) -> str:
    """A variable's name as records give it: a Keras variable's path (`dense/kernel`), else its TF name."""
    return getattr(variable, "path", None) or variable.name


def named_arrays_sha256(named: Iterable[tuple[str, np.ndarray]]) -> str:
    """`weights_sha256` of (variable name, value) pairs: the same bytes give the same hash."""
    digest = hashlib.sha256()
    for name, value in named:
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def array_sha256(values: np.ndarray) -> str:
    """Hash of an array's dtype, shape and raw bytes (predictions, loss traces)."""
    values = np.ascontiguousarray(values)
    digest = hashlib.sha256(f"{values.dtype.str}|{values.shape}|".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()
