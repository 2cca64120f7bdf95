"""A user's own data: `npz:PATH`, `csv:PATH`, a function returning arrays or `tf.data.Dataset`s,
or arrays handed to the Python API.

Inputs may be one array or several (`features.py`: a dict by input name, a tuple by position); an
npz file holds several as `x_train/NAME` and `x_test/NAME` arrays (`x_train/0`, `x_train/1`... by
position). Labels are one array. Sample weights, one number per training example as Keras's
`fit(sample_weight=...)` takes them, come with the data: npz `w_train` (or `w` beside `x`, `y`), a third
array beside x and y, or a tf.data.Dataset of (x, y, w) elements; weights of the test set are held in the
data's identity but not scored with (every test example counts once: runs are compared example by example).

Whatever the source, it becomes a `Dataset`: a training pool and a fixed test
set in memory, which the harness's own `tf.data` pipeline then splits (split
seed), orders (shuffle seed) and augments (augment seed) as for the built-in
data sets. Data that comes without a test set (`x, y` only, or a CSV) has a
fixed 20% held out as the test set, chosen once by a fixed seed: every trial is
scored on the same examples, so predictions can be compared run against run.
"""

from __future__ import annotations

import contextlib
import csv
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError, first_line
from harness.trial import features, user_code

# Share of x, y-only data held out as the fixed test set, and the seed choosing it (part of the data's
# definition, not a source of run-to-run variation).
TEST_SHARE = 0.2
TEST_SPLIT_SEED = 20211
# The seed a data function runs under (Python's, NumPy's and TF's global seeds): an unseeded shuffle() of its
# tf.data pipeline or np.random call gives the same data in every process, as part of the data's definition.
DATA_FUNCTION_SEED = 20211
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# Sample weights of the training and test sets, beside NPZ_KEYS (optional): the last two of a data's six parts.
WEIGHT_KEYS = ("w_train", "w_test")
PART_KEYS = NPZ_KEYS + WEIGHT_KEYS
# A trial holds about this many copies of the arrays (the arrays, the split, the pipeline's tensors).
COPIES_PER_TRIAL = 3
# Bytes of each value as a trial holds it: float32, or int32 for integers (`_array`).
VALUE_BYTES = 4
INT32 = np.iinfo(np.int32)
# What to do with data that does not fit in memory.
SUBSET = "study a subset of it, saved as its own npz file"


def load(spec: str, label_column: str = "") -> tuple[str, tuple[Any, ...], int | None]:
    """(name, its six parts (x_train, y_train, x_test, y_test, w_train, w_test: the weights None where the data
    has none), the batch size a batched training tf.data.Dataset came in) from a data spec, the inputs one array
    or several (features.py); one sentence on anything unusable."""
    source_batch_size = None
    with _memory_refused(spec):
        if spec.startswith("npz:"):
            arrays = _npz(spec[len("npz:"):])
        elif spec.startswith("csv:"):
            arrays = _csv(spec[len("csv:"):], label_column)
        elif spec.startswith("arrays:"):
            arrays, source_batch_size = user_code.registered(spec)
        else:
            function = user_code.resolve_function(spec, "data")
            with fixed_seeds():
                arrays, source_batch_size = _from_function(user_code.call(function, spec, "data"), spec)
        # Before _checked converts the arrays, copying each: data the memory cannot hold is not copied at all.
        _check_memory(spec, arrays)
        parts = _checked(arrays, spec)
    return spec, parts, source_batch_size


def _checked(six: tuple[Any, ...], source: str) -> tuple[Any, ...]:
    """The six parts as arrays (inputs: one or several), with as many inputs (and weights) as labels in each set
    and the same inputs, of the same example shapes, in both; one sentence on anything else."""
    x_train, y_train, x_test, y_test = (
        _inputs(part, name, source) if name.startswith("x") else _labels(part, name, source)
        for part, name in zip(six[:4], NPZ_KEYS, strict=True))
    w_train, w_test = (None if part is None else _weights(part, name, source)
                       for part, name in zip(six[4:], WEIGHT_KEYS, strict=True))
    for x, y, w, part in ((x_train, y_train, w_train, "train"), (x_test, y_test, w_test, "test")):
        for name, array in features.named(x, f"x_{part}"):
            if len(array) != len(y):
                raise UsageError(f"{source}: {name} has {len(array)} examples but y_{part} has {len(y)}.")
        if w is not None and len(w) != len(y):
            raise UsageError(f"{source}: w_{part} holds {len(w)} sample weights but y_{part} has {len(y)} examples.")
        if len(y) == 0:
            raise UsageError(f"{source}: the {part} set is empty.")
    if w_train is not None and not w_train.any():
        raise UsageError(f"{source}: every sample weight of w_train is 0; the model would learn nothing.")
    train_shapes, test_shapes = features.example_shapes(x_train), features.example_shapes(x_test)
    if train_shapes != test_shapes:
        raise UsageError(f"{source}: training examples have shape {features.describe_shapes(x_train)} but test "
                         f"examples {features.describe_shapes(x_test)}.")
    # A model on examples of no values (shape (0,)) aborts the process in oneDNN, with no sentence.
    for name, array in features.named(x_train, "x_train"):
        if array.ndim > 1 and array[0].size == 0:
            raise UsageError(f"{source}: {name}'s examples have shape {array.shape[1:]}, no values for a model to "
                             "learn from.")
    return x_train, y_train, x_test, y_test, w_train, w_test


def _weights(value: Any, name: str, source: str) -> np.ndarray:
    """Sample weights: one finite number of 0 or more per example (shape (n,) or (n, 1), as Keras's fit takes
    them), as float32."""
    if features.is_several(value):
        raise UsageError(f"{source}: {name} holds several arrays; sample weights are one number per example.")
    array = _array(value, name, source).astype(np.float32)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise UsageError(f"{source}: {name} must hold one sample weight per example (shape (n,)), not shape "
                         f"{array.shape}.")
    if (array < 0).any():
        raise UsageError(f"{source}: {name} holds a negative sample weight ({float(array.min()):g}); weights are 0 "
                         "or more.")
    return array


def _inputs(value: Any, name: str, source: str) -> Any:
    """A model's inputs: one array, or several (a dict by input name, a tuple by position), each an array."""
    if features.is_several(value) and not len(value):
        raise UsageError(f"{source}: {name} holds no arrays.")
    return features.normalized(value, lambda array, key: _array(array, f"{name}/{key}" if key else name, source))


def _labels(value: Any, name: str, source: str) -> np.ndarray:
    if features.is_several(value):
        raise UsageError(f"{source}: {name} holds several arrays, one per output; the harness trains and scores a "
                         f"model with one output: it takes {features.SUPPORTED_FORMS}.")
    return _array(value, name, source)


def from_python(data: Any) -> str:
    """Registers data handed to the Python API and returns its spec.

    Accepts a spec string, (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, y_test)),
    (x, y), or a dict with the npz keys, each x one array or a dict or tuple of arrays (several inputs); two
    tf.data.Datasets (train, test) or one; or a function of no arguments returning any of these. Sample
    weights come as a third array beside x and y ((x, y, w), ((x_train, y_train, w_train), (x_test, y_test))),
    as `w_train`/`w_test` (or `w`) in a dict, or as (x, y, w) elements of a tf.data.Dataset.
    """
    if isinstance(data, str):
        return data
    from harness.trial.fingerprints import named_arrays_sha256

    with _memory_refused("data"):
        with fixed_seeds():
            if callable(data):
                data = user_code.call(data, f"the data function {getattr(data, '__name__', 'given')}", "data")
            six, source_batch_size = _from_function(data, "data")
        _check_memory("data", six)
        arrays = _checked(six, "data")
    digest = named_arrays_sha256(pair for part, key in zip(arrays, PART_KEYS, strict=True) if part is not None
                                 for pair in features.named(part, key))
    return user_code.register_object("arrays:", digest[:16], (arrays, source_batch_size))


@contextlib.contextmanager
def fixed_seeds():
    """Runs a data function under DATA_FUNCTION_SEED (keras.utils.set_random_seed: Python's, NumPy's and TF's
    global seeds), then gives Python's and NumPy's generators back their state: the data is the same in every
    process, and the caller's own random draws are not moved. TF's global seed stays set (TF cannot give its
    state back); every trial sets its own seeds before it builds anything."""
    import random

    import keras

    saved = random.getstate(), np.random.get_state()
    keras.utils.set_random_seed(DATA_FUNCTION_SEED)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def class_count(y_train: np.ndarray, y_test: np.ndarray) -> int:
    """Classes the labels name: integer labels count max + 1, one-hot labels their width; 0 for targets
    that are not class labels (regression)."""
    if np.issubdtype(y_train.dtype, np.integer) and (y_train.ndim == 1 or y_train.shape[1:] == (1,)):
        return int(max(y_train.max(), y_test.max())) + 1
    if y_train.ndim == 2 and y_train.shape[1] > 1 and _is_one_hot(y_train):
        return int(y_train.shape[1])
    return 0


def _is_one_hot(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def _npz(path: str) -> tuple[Any, ...]:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file {path} (npz data).")
    try:
        loaded = np.load(file, allow_pickle=False)
        if not hasattr(loaded, "files"):  # one .npy array, not an .npz archive of named arrays
            raise ValueError("it holds one array, not named arrays")
        with loaded as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(f"{path} is not a readable .npz file ({first_line(error)}).") from None
    return _four(_several_inputs(arrays, path), path)


def _several_inputs(arrays: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    """npz arrays named `x_train/NAME`, `x_test/NAME` gathered into one dict of inputs per part (a tuple where
    every NAME is a position 0, 1, ...)."""
    gathered: dict[str, Any] = {key: value for key, value in arrays.items() if "/" not in key}
    for part in ("x_train", "x_test", "x"):
        inputs = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(part + "/")}
        if not inputs:
            continue
        if part in gathered:
            raise UsageError(f"{path} holds both {part} and {part}/NAME arrays; give one or the other.")
        positions = [str(index) for index in range(len(inputs))]
        gathered[part] = tuple(inputs[p] for p in positions) if sorted(inputs) == sorted(positions) else inputs
    return gathered


def _four(data: Any, source: str) -> tuple[Any, ...]:
    """The six parts (four arrays, and the sample weights of each set or None) from any accepted shape of data;
    x, y (and w) alone get the fixed test split."""
    if isinstance(data, Mapping):
        if all(key in data for key in NPZ_KEYS):
            return *(data[key] for key in NPZ_KEYS), *(data.get(key) for key in WEIGHT_KEYS)
        if "x" in data and "y" in data:
            return _held_out_test(data["x"], data["y"], source, data.get("w"))
        held = ", ".join(sorted(map(str, data))) or "nothing"
        raise UsageError(f"{source} must hold arrays named {', '.join(NPZ_KEYS)} (or x and y; sample weights as "
                         f"{' and '.join(WEIGHT_KEYS)}, or w); it holds {held}.")
    if isinstance(data, (tuple, list)):
        if len(data) == 4:
            return *data, None, None
        if len(data) == 2 and all(isinstance(part, (tuple, list)) and len(part) in (2, 3) for part in data):
            (x_train, y_train, *w_train), (x_test, y_test, *w_test) = data
            return x_train, y_train, x_test, y_test, next(iter(w_train), None), next(iter(w_test), None)
        if len(data) in (2, 3):
            return _held_out_test(data[0], data[1], source, data[2] if len(data) == 3 else None)
    raise UsageError(f"{source} must be (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, y_test)), "
                     f"(x, y) or a dict of arrays (sample weights as a third array beside x and y), not "
                     f"{type(data).__name__}.")


def _held_out_test(x: Any, y: Any, source: str, w: Any = None) -> tuple[Any, ...]:
    # Indexable arrays only: _checked converts and checks the four parts once, after the split.
    if features.is_several(y):
        _labels(y, "y", source)  # refused, in its one sentence
    x, y = features.normalized(x, lambda array, _: np.asarray(array)), np.asarray(y)
    if any(array.ndim == 0 for array in features.arrays(x)) or y.ndim == 0:
        _inputs(x, "x", source), _labels(y, "y", source)  # no examples axis: refused, in its one sentence
    for name, array in features.named(x, "x"):
        if len(array) != len(y):
            raise UsageError(f"{source}: {name} has {len(array)} examples but y has {len(y)}.")
    if w is not None:
        w = _weights(w, "w", source)
        if len(w) != len(y):
            raise UsageError(f"{source}: w holds {len(w)} sample weights but y has {len(y)} examples.")
    if len(y) < 5:
        raise UsageError(f"{source}: {len(y)} examples are too few to hold out a test set.")
    order = np.random.default_rng(TEST_SPLIT_SEED).permutation(len(y))
    n_test = max(1, int(round(TEST_SHARE * len(y))))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    weights = (None, None) if w is None else (w[train], w[test])
    return features.take(x, train), y[train], features.take(x, test), y[test], *weights


def _csv(path: str, label_column: str) -> tuple[np.ndarray, ...]:
    """A CSV with a header row and numbers only; the label column (default: the last) is y."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file {path} (csv data).")
    try:
        with file.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"{path} is not a text CSV file ({first_line(error)}).") from None
    if len(rows) < 2:
        raise UsageError(f"{path} needs a header row and at least one row of data.")
    header, body = [name.strip() for name in rows[0]], [row for row in rows[1:] if row]
    label = label_column or header[-1]
    if label not in header:
        raise UsageError(f"{path} has no column {label!r}; its columns are {', '.join(header)}.")
    # Rows of another length than the header first: numpy cannot make a table of them either way.
    ragged = next((number for number, row in enumerate(rows[1:], start=2) if row and len(row) != len(header)), None)
    if ragged is not None:
        raise UsageError(f"{path}: every row must have {len(header)} values, like the header; row {ragged} has "
                         f"{len(rows[ragged - 1])}.")
    try:
        table = np.array(body, dtype=np.float64)
    except ValueError:
        bad = next(row for row in body if not _numeric(row))
        raise UsageError(f"{path}: every value must be a number; row {body.index(bad) + 2} is "
                         f"{','.join(bad)!r}.") from None
    if len(header) == 1:
        raise UsageError(f"{path} has no column but its label column {label!r}; a model needs at least one column "
                         "of features.")
    index = header.index(label)
    y = table[:, index]
    # Whole-number labels are classes; anything else is a regression target.
    whole = np.all(y == np.round(y)) and y.min() >= 0
    y = _int32(y, f"column {label!r}", path) if whole else y.astype(np.float32)[:, None]
    x = np.delete(table, index, axis=1).astype(np.float32)
    return _held_out_test(x, y, path)


def _numeric(row: list[str]) -> bool:
    try:
        [float(value) for value in row]
    except ValueError:
        return False
    return True


def _from_function(value: Any, spec: str) -> tuple[tuple[Any, ...], int | None]:
    """The six parts from what a data function returned: arrays in any accepted shape, or tf.data.Datasets
    (train, test), read whole into memory; and the batch size a batched training dataset came in (the
    harness batches the examples itself, and says so where the sizes differ)."""
    import tensorflow as tf

    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, tf.data.Dataset) for v in value):
        (x_train, y_train, w_train, batch), (x_test, y_test, w_test, _) = (_read_dataset(v, spec) for v in value)
        return (x_train, y_train, x_test, y_test, w_train, w_test), batch
    if isinstance(value, Mapping) and all(isinstance(value.get(k), tf.data.Dataset) for k in ("train", "test")):
        (x_train, y_train, w_train, batch), (x_test, y_test, w_test, _) = (_read_dataset(value[k], spec)
                                                                           for k in ("train", "test"))
        return (x_train, y_train, x_test, y_test, w_train, w_test), batch
    if isinstance(value, tf.data.Dataset):
        x, y, w, batch = _read_dataset(value, spec)
        return _held_out_test(x, y, spec, w), batch
    return _four(value, spec), None


def _read_dataset(dataset: Any, spec: str) -> tuple[Any, np.ndarray, np.ndarray | None, int | None]:
    """A tf.data.Dataset of (x, y) or (x, y, sample weight) elements or batches (x one tensor, or a dict or tuple
    of them), as arrays of the same structure (the weights None where it gives none), and its first batch's size
    (None for a dataset of single examples)."""
    import tensorflow as tf

    element = dataset.element_spec
    if not (isinstance(element, tuple) and len(element) in (2, 3)):
        raise UsageError(f"{spec}: a tf.data.Dataset must give (x, y) pairs or (x, y, sample weight) triples, "
                         f"not {element}.")
    if len(element) == 3 and not isinstance(element[2], tf.TensorSpec):
        raise UsageError(f"{spec}: the tf.data.Dataset gives several sample weights per example, one per output; "
                         "the harness trains a model with one output and one weight per example.")
    if not isinstance(element[1], tf.TensorSpec):
        raise UsageError(f"{spec}: the tf.data.Dataset gives several labels per example, one per output; the "
                         f"harness trains and scores a model with one output: it takes {features.SUPPORTED_FORMS}.")
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise UsageError(f"{spec}: the tf.data.Dataset is infinite (it repeats); give one pass over the data.")
    # Batched datasets have an unknown leading dimension; element datasets are batched here to read fast.
    first = tf.nest.flatten(element[0])[0]
    batched = first.shape.rank and first.shape[0] is None
    source = dataset if batched else dataset.batch(4096)
    xs, ys, ws = [], [], []
    for x, y, *w in source.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
        ws.extend(w)
    if not xs:
        raise UsageError(f"{spec}: a tf.data.Dataset it returned is empty.")
    return (features.concatenate(xs), np.concatenate(ys), np.concatenate(ws) if ws else None,
            features.count(xs[0]) if batched else None)


def _array(value: Any, name: str, source: str) -> np.ndarray:
    """A float32 (or int32, for integer inputs and labels) array with at least one axis."""
    try:
        array = np.asarray(value)
    except MemoryError:
        raise
    except Exception as error:
        raise UsageError(f"{source}: {name} is not an array ({first_line(error)}).") from None
    # Complex numbers are numbers to numpy, but casting them to float32 silently drops their imaginary part.
    if array.ndim == 0 or array.dtype == object or np.issubdtype(array.dtype, np.complexfloating) or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UsageError(f"{source}: {name} must be a numeric array with an examples axis, got "
                         f"{array.dtype} of shape {array.shape}.")
    if np.issubdtype(array.dtype, np.integer):
        return _int32(array, name, source)
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{source}: {name} holds NaN or infinite values.")
    return array


def _int32(array: np.ndarray, name: str, source: str) -> np.ndarray:
    """Whole numbers (labels, token ids) as int32, which is what a trial holds; out of its range they would
    wrap around (a label of 2**40 became class 0), so they are refused in one sentence."""
    if array.size and (array.min() < INT32.min or array.max() > INT32.max):
        value = array.min() if array.min() < INT32.min else array.max()
        raise UsageError(f"{source}: {name} holds {int(value)}, outside the 32-bit integers the harness trains on "
                         f"({INT32.min} to {INT32.max}).")
    return array.astype(np.int32)


def _check_memory(spec: str, arrays: tuple[Any, ...]) -> None:
    """Data sets are held in memory; refuse, in one sentence, data a trial cannot hold. The arrays may be as
    given (before _checked): their size is counted as a trial holds them, VALUE_BYTES a value."""
    size = VALUE_BYTES * sum(int(np.size(array)) for part in arrays if part is not None
                             for array in features.arrays(part))
    available = _available_memory()
    if available is not None and size * COPIES_PER_TRIAL > available:
        raise UsageError(f"{spec} takes {size / 2**30:.1f} GiB in memory and a trial holds about "
                         f"{COPIES_PER_TRIAL} copies, more than the {available / 2**30:.1f} GiB available here; "
                         f"{SUBSET}.")


@contextlib.contextmanager
def _memory_refused(spec: str) -> Iterator[None]:
    """An allocation that fails while the data is read, split or converted (numpy's MemoryError, which says how
    much it asked for) is one sentence: what `_check_memory` could not foresee (the memory available unknown,
    or taken meanwhile; copies made before the arrays are counted)."""
    try:
        yield
    except MemoryError as error:
        raise UsageError(f"{spec} does not fit in memory here ({first_line(error)}); {SUBSET}.") from None


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
