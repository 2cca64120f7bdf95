"""A model's inputs: one array, or several (a dict by input name, or a tuple by position).

Keras takes several inputs as a dict keyed by the `keras.Input` names or as a list/tuple in the order of
`model.inputs`; the harness keeps whichever the user gave, end to end (split, pipeline, forward pass,
prediction), so the model sees its data exactly as `model.fit` would. Every helper here maps one
operation over each array of the structure, with `tf.nest`, so the rest of the trial code has one
path for both forms. Labels stay one array: a model is trained and scored on one output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

# How records and messages describe what the harness takes.
SUPPORTED_FORMS = ("inputs as one array, a dict of arrays by input name, or a tuple or list of arrays by "
                   "position; labels as one array (a model with one output)")


def is_several(x: Any) -> bool:
    """Whether x holds several inputs (a dict, or a tuple/list of arrays) rather than one array."""
    if isinstance(x, Mapping):
        return True
    return isinstance(x, (tuple, list)) and bool(x) and all(hasattr(item, "shape") for item in x)


def normalized(x: Any, convert) -> Any:
    """x with each array passed through `convert(array, name)`: a dict keeps its keys (sorted, as tf.nest orders
    them), a list becomes a tuple, one array stays one array."""
    if isinstance(x, Mapping):
        return {str(key): convert(x[key], str(key)) for key in sorted(x, key=str)}
    if is_several(x):
        return tuple(convert(item, str(index)) for index, item in enumerate(x))
    return convert(x, "")


def named(x: Any, prefix: str) -> list[tuple[str, np.ndarray]]:
    """(name, array) for each array: `prefix` for one array (so a single array's hash is what it always was),
    `prefix/key` or `prefix/position` for several."""
    if isinstance(x, Mapping):
        return [(f"{prefix}/{key}", x[key]) for key in x]
    if isinstance(x, tuple):
        return [(f"{prefix}/{index}", item) for index, item in enumerate(x)]
    return [(prefix, x)]


def arrays(x: Any) -> list[Any]:
    return tf.nest.flatten(x)


def count(x: Any) -> int:
    """Examples in x (every array has them on its first axis)."""
    return int(len(arrays(x)[0]))


def take(x: Any, index: Any) -> Any:
    """x[index] of each array: a slice, or an index array."""
    return tf.nest.map_structure(lambda a: a[index], x)


def constant(x: Any) -> Any:
    return tf.nest.map_structure(tf.constant, x)


def gather(x: Any, indices: tf.Tensor) -> Any:
    return tf.nest.map_structure(lambda a: tf.gather(a, indices), x)


def concatenate(parts: list[Any]) -> Any:
    """Pieces of one structure (batches read from a tf.data.Dataset) joined along the examples' axis."""
    return tf.nest.map_structure(lambda *pieces: np.concatenate(pieces), *parts)


def example_shapes(x: Any) -> Any:
    """One example's shape: a list for one array; a dict (or list) of them for several inputs."""
    shapes = tf.nest.map_structure(lambda a: [int(d) for d in a.shape[1:]], x)
    return list(shapes) if isinstance(shapes, tuple) else shapes


def describe_shapes(x: Any) -> str:
    """One example's shape in words, for messages: `(8, 8, 1)`, or `image (8, 8, 1), meta (3,)`."""
    if isinstance(x, Mapping):
        return ", ".join(f"{key} {tuple(a.shape[1:])}" for key, a in x.items())
    if isinstance(x, tuple):
        return ", ".join(f"#{index} {tuple(a.shape[1:])}" for index, a in enumerate(x))
    return str(tuple(x.shape[1:]))


def signature(x: Any) -> Any:
    """TensorSpecs of a batch of any size of x's examples."""
    return tf.nest.map_structure(lambda a: tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype)), x)
