"""A user's own data: `npz:PATH`, `csv:PATH`, a function returning arrays or `tf.data.Dataset`s,
or arrays handed to the Python API.

Whatever the source, it becomes a `Dataset`: a training pool and a fixed test
set in memory, which the harness's own `tf.data` pipeline then splits (split
seed), orders (shuffle seed) and augments (augment seed) as for the built-in
data sets. Data that comes without a test set (`x, y` only, or a CSV) has a
fixed 20% held out as the test set, chosen once by a fixed seed: every trial is
scored on the same examples, so predictions can be compared run against run.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError, first_line
from harness.trial import user_code

# Share of x, y-only data held out as the fixed test set, and the seed choosing it (part of the data's
# definition, not a source of run-to-run variation).
TEST_SHARE = 0.2
TEST_SPLIT_SEED = 20211
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# A trial holds about this many copies of the arrays (the arrays, the split, the pipeline's tensors).
COPIES_PER_TRIAL = 3


def load(spec: str, label_column: str = "") -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """(name, x_train, y_train, x_test, y_test, the batch size a batched training tf.data.Dataset came in) from a
    data spec; one sentence on anything unusable."""
    source_batch_size = None
    if spec.startswith("npz:"):
        arrays = _npz(spec[len("npz:"):])
    elif spec.startswith("csv:"):
        arrays = _csv(spec[len("csv:"):], label_column)
    elif spec.startswith("arrays:"):
        arrays = user_code.registered(spec)
    else:
        function = user_code.resolve_function(spec, "data")
        arrays, source_batch_size = _from_function(user_code.call(function, spec, "data"), spec)
    x_train, y_train, x_test, y_test = (_array(a, name, spec) for a, name in zip(arrays, NPZ_KEYS, strict=True))
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise UsageError(f"{spec}: x_{part} has {len(x)} examples but y_{part} has {len(y)}.")
        if len(x) == 0:
            raise UsageError(f"{spec}: the {part} set is empty.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(f"{spec}: training examples have shape {x_train.shape[1:]} but test examples "
                         f"{x_test.shape[1:]}.")
    _check_memory(spec, (x_train, y_train, x_test, y_test))
    return spec, x_train, y_train, x_test, y_test, source_batch_size


def from_python(data: Any) -> str:
    """Registers data handed to the Python API and returns its spec.

    Accepts a spec string, (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, y_test)),
    (x, y), or a dict with the npz keys.
    """
    if isinstance(data, str):
        return data
    from harness.trial.fingerprints import named_arrays_sha256

    arrays = tuple(_array(a, name, "data") for a, name in zip(_four(data, "data"), NPZ_KEYS, strict=True))
    digest = named_arrays_sha256(zip(NPZ_KEYS, arrays, strict=True))
    return user_code.register_object("arrays:", digest[:16], arrays)


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
    return _four(arrays, path)


def _four(data: Any, source: str) -> tuple[Any, ...]:
    """The four arrays from any accepted shape of data; x, y alone get the fixed test split."""
    if isinstance(data, Mapping):
        if all(key in data for key in NPZ_KEYS):
            return tuple(data[key] for key in NPZ_KEYS)
        if "x" in data and "y" in data:
            return _held_out_test(np.asarray(data["x"]), np.asarray(data["y"]), source)
        raise UsageError(f"{source} must hold arrays named {', '.join(NPZ_KEYS)} (or x and y); it holds "
                         f"{', '.join(sorted(map(str, data))) or 'nothing'}.")
    if isinstance(data, (tuple, list)):
        if len(data) == 4:
            return tuple(data)
        if len(data) == 2 and all(isinstance(part, (tuple, list)) and len(part) == 2 for part in data):
            (x_train, y_train), (x_test, y_test) = data
            return x_train, y_train, x_test, y_test
        if len(data) == 2:
            return _held_out_test(np.asarray(data[0]), np.asarray(data[1]), source)
    raise UsageError(f"{source} must be (x_train, y_train, x_test, y_test), ((x_train, y_train), (x_test, y_test)), "
                     f"(x, y) or a dict of arrays, not {type(data).__name__}.")


def _held_out_test(x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, ...]:
    if len(x) != len(y):
        raise UsageError(f"{source}: x has {len(x)} examples but y has {len(y)}.")
    if len(x) < 5:
        raise UsageError(f"{source}: {len(x)} examples are too few to hold out a test set.")
    order = np.random.default_rng(TEST_SPLIT_SEED).permutation(len(x))
    n_test = max(1, int(round(TEST_SHARE * len(x))))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return x[train], y[train], x[test], y[test]


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
    try:
        table = np.array(body, dtype=np.float64)
    except ValueError:
        bad = next(row for row in body if not _numeric(row))
        raise UsageError(f"{path}: every value must be a number; row {body.index(bad) + 2} is "
                         f"{','.join(bad)!r}.") from None
    if table.ndim != 2 or table.shape[1] != len(header):
        raise UsageError(f"{path}: every row must have {len(header)} values, like the header.")
    index = header.index(label)
    y = table[:, index]
    # Whole-number labels are classes; anything else is a regression target.
    y = y.astype(np.int32) if np.all(y == np.round(y)) and y.min() >= 0 else y.astype(np.float32)[:, None]
    x = np.delete(table, index, axis=1).astype(np.float32)
    return _held_out_test(x, y, path)


def _numeric(row: list[str]) -> bool:
    try:
        [float(value) for value in row]
    except ValueError:
        return False
    return True


def _from_function(value: Any, spec: str) -> tuple[tuple[Any, ...], int | None]:
    """Arrays from what a data function returned: arrays in any accepted shape, or tf.data.Datasets
    (train, test), read whole into memory; and the batch size a batched training dataset came in (the
    harness batches the examples itself, and says so where the sizes differ)."""
    import tensorflow as tf

    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, tf.data.Dataset) for v in value):
        (x_train, y_train, batch), (x_test, y_test, _) = (_read_dataset(v, spec) for v in value)
        return (x_train, y_train, x_test, y_test), batch
    if isinstance(value, Mapping) and all(isinstance(value.get(k), tf.data.Dataset) for k in ("train", "test")):
        (x_train, y_train, batch), (x_test, y_test, _) = (_read_dataset(value[k], spec) for k in ("train", "test"))
        return (x_train, y_train, x_test, y_test), batch
    if isinstance(value, tf.data.Dataset):
        x, y, batch = _read_dataset(value, spec)
        return _held_out_test(x, y, spec), batch
    return _four(value, spec), None


def _read_dataset(dataset: Any, spec: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """A tf.data.Dataset of (x, y) elements or batches, as two arrays, and its first batch's size (None for a
    dataset of single examples)."""
    import tensorflow as tf

    element = dataset.element_spec
    if not (isinstance(element, tuple) and len(element) == 2):
        raise UsageError(f"{spec}: a tf.data.Dataset must give (x, y) pairs, not {element}.")
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise UsageError(f"{spec}: the tf.data.Dataset is infinite (it repeats); give one pass over the data.")
    # Batched datasets have an unknown leading dimension; element datasets are batched here to read fast.
    batched = element[0].shape.rank and element[0].shape[0] is None
    source = dataset if batched else dataset.batch(4096)
    xs, ys = [], []
    for x, y in source.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        raise UsageError(f"{spec}: a tf.data.Dataset it returned is empty.")
    return np.concatenate(xs), np.concatenate(ys), int(len(xs[0])) if batched else None


def _array(value: Any, name: str, source: str) -> np.ndarray:
    """A float32 (or int32, for integer inputs and labels) array with at least one axis."""
    try:
        array = np.asarray(value)
    except Exception as error:
        raise UsageError(f"{source}: {name} is not an array ({first_line(error)}).") from None
    if array.ndim == 0 or array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                                        or array.dtype == bool):
        raise UsageError(f"{source}: {name} must be a numeric array with an examples axis, got "
                         f"{array.dtype} of shape {array.shape}.")
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int32)
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise UsageError(f"{source}: {name} holds NaN or infinite values.")
    return array


def _check_memory(spec: str, arrays: tuple[np.ndarray, ...]) -> None:
    """Data sets are held in memory; refuse, in one sentence, data a trial cannot hold."""
    size = sum(a.nbytes for a in arrays)
    available = _available_memory()
    if available is not None and size * COPIES_PER_TRIAL > available:
        raise UsageError(f"{spec} takes {size / 2**30:.1f} GiB in memory and a trial holds about "
                         f"{COPIES_PER_TRIAL} copies, more than the {available / 2**30:.1f} GiB available here; "
                         "study a subset of it, saved as its own npz file.")


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
