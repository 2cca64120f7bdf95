"""Data sets and `tf.data` pipelines that are deterministic by construction.

Every data set is held in memory as a training pool and a fixed test set. The
`split` seed picks the validation share of the pool; the `shuffle` seed picks
each epoch's order; the `augment` seed picks each batch's random shifts. All of
them go through stateless ops keyed by (seed, epoch or batch index), so the
batches a trial sees are a pure function of its seeds: no shuffle buffer, no
iterator state, the same in a fresh process as in a long-lived one.

Examples may weigh differently in the training loss, as Keras's `fit` weights them: sample weights that come
with the data, or --class_weight. A weighted trial's batches carry each example's weight as a third element.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from harness.errors import UsageError, first_line
from harness.files import replace_atomically
from harness.trial import features, user_data
from harness.trial.config import TrialConfig
from harness.trial.fingerprints import array_sha256, named_arrays_sha256
from harness.trial.seeds import SeedSet

DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
# The digits file has no official split; its last 360 images (20%) are the
# fixed test set, so the split seed only ever moves examples within the pool.
DIGITS_TEST_EXAMPLES = 360
# Fixed seed of the synthetic data sets: they are part of the benchmark's
# definition, not a source of run-to-run variation.
SYNTHETIC_DATA_SEED = 20211
# MNIST-1D's sizes and seed (the package's own default seed). 100,000 test examples: one is 0.001 points
# of accuracy (a digits image is 0.28), and the noise floor sqrt(p(1-p)/n) is 0.16 points at 57% accuracy,
# below the 0.2-0.5 points each seed moves test accuracy (docs/reproducibility.md has the measurement).
MNIST1D_TRAIN_EXAMPLES, MNIST1D_TEST_EXAMPLES, MNIST1D_SEED = 4_000, 100_000, 42
BUILTIN_DATASETS = ("digits", "mnist1d", "synthetic", "random_regression")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A training pool and a test set in memory. Images are NHWC float32 in [0, 1]. A user's inputs may be
    several arrays (a dict by input name or a tuple by position: features.py); labels are one array."""

    name: str
    train_x: Any  # np.ndarray, or a dict or tuple of them
    train_y: np.ndarray
    test_x: Any
    test_y: np.ndarray
    num_classes: int  # 0 for regression
    # SHA-256 of the four arrays (names, dtypes, shapes, bytes): which data a record was made on.
    sha256: str = ""
    # The batch size a user's batched training tf.data.Dataset came in (None otherwise): the harness trains in
    # batches of --batch_size from its own pipeline, and the summary says so where the two differ.
    source_batch_size: int | None = None
    # Sample weights that came with a user's data, one per example (None: every example weighs 1). The training
    # pool's weight each example's loss; the test set's are part of the data's identity, not of its scoring.
    train_w: np.ndarray | None = None
    test_w: np.ndarray | None = None

    @property
    def is_classification(self) -> bool:
        return self.num_classes > 0

    @property
    def is_image(self) -> bool:
        return not self.several_inputs and self.train_x.ndim == 4

    @property
    def several_inputs(self) -> bool:
        return features.is_several(self.train_x)


@dataclasses.dataclass(frozen=True)
class Split:
    """What one trial trains, validates and tests on."""

    dataset: Dataset
    train_x: Any
    train_y: np.ndarray
    validation_x: Any
    validation_y: np.ndarray
    # Each training example's weight in the loss (example_weights), None where every example weighs 1.
    train_w: np.ndarray | None = None


def dataset_names() -> str:
    return ", ".join(BUILTIN_DATASETS) + ", tfds:NAME, npz:PATH, csv:PATH, or path/to/file.py:function"


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: str | None = None, label_column: str = "") -> Dataset:
    """Loads a data set by name or spec; cached, since loading is pure and trials share it."""
    dataset = _load(name, data_dir, label_column)
    parts = zip(("train_x", "train_y", "test_x", "test_y", "train_w", "test_w"),
                (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y, dataset.train_w, dataset.test_w),
                strict=True)
    # One array is hashed under its part's name, as always; several inputs under `train_x/NAME`; sample weights
    # only where the data has them, so unweighted data keeps its hash.
    arrays = [pair for name, part in parts if part is not None for pair in features.named(part, name)]
    return dataclasses.replace(dataset, sha256=named_arrays_sha256(arrays))


def dataset_of(config: TrialConfig) -> Dataset:
    """The data set a trial config names."""
    return load_dataset(config.dataset, config.data_dir, config.label_column)


def _load(name: str, data_dir: str | None, label_column: str) -> Dataset:
    if label_column and not name.startswith("csv:"):
        raise UsageError("--label_column is for csv:PATH data.")
    if name == "digits":
        return _digits()
    if name == "mnist1d":
        return _mnist1d()
    if name == "synthetic":
        return _synthetic_mnist()
    if name == "random_regression":
        return _random_regression()
    if name.startswith("tfds:") and len(name) > len("tfds:"):
        return _tfds(name[len("tfds:"):], data_dir)
    if name.startswith(("npz:", "csv:", "arrays:")) or ":" in name:
        spec, (train_x, train_y, test_x, test_y, train_w, test_w), batch_size = user_data.load(name, label_column)
        return Dataset(spec, train_x, train_y, test_x, test_y, user_data.class_count(train_y, test_y),
                       source_batch_size=batch_size, train_w=train_w, test_w=test_w)
    raise UsageError(f"unknown dataset {name!r}; choose one of {dataset_names()}.")


def _digits() -> Dataset:
    raw = resources.files("harness").joinpath("data/digits.csv.gz").read_bytes()
    if hashlib.sha256(raw).hexdigest() != DIGITS_SHA256:
        raise UsageError("the embedded digits file is damaged (SHA-256 mismatch); reinstall the package.")
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",", dtype=np.int64)
    images = (table[:, :64].reshape(-1, 8, 8, 1) / 16.0).astype(np.float32)
    labels = table[:, 64].astype(np.int32)
    cut = len(labels) - DIGITS_TEST_EXAMPLES
    return Dataset("digits", images[:cut], labels[:cut], images[cut:], labels[cut:], 10)


def _mnist1d(train_examples: int = MNIST1D_TRAIN_EXAMPLES, test_examples: int = MNIST1D_TEST_EXAMPLES) -> Dataset:
    """MNIST-1D (Greydanus 2020): 40-point signals of the ten digits' outlines, padded, shifted, scaled,
    sheared and noised, generated from a seed by the `mnist1d` package (Apache-2.0): offline, any size.

    Generating takes about 20 s for the default sizes, so the arrays are cached on disk (`cache_dir()`),
    keyed by the package version, seed and sizes; the records' data hash says which arrays a trial saw
    either way. Other sizes are for tests.
    """
    from importlib import metadata

    version = metadata.version("mnist1d")
    path = cache_dir() / f"mnist1d-{version}-seed{MNIST1D_SEED}-{train_examples}-{test_examples}.npz"
    try:
        with np.load(path) as cached:
            arrays = [cached[key] for key in ("train_x", "train_y", "test_x", "test_y")]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # missing, or cut short or damaged
        arrays = _generate_mnist1d(train_examples, test_examples)
        _cache_arrays(path, dict(zip(("train_x", "train_y", "test_x", "test_y"), arrays, strict=True)))
    return Dataset("mnist1d", *arrays, 10)


def _generate_mnist1d(train_examples: int, test_examples: int) -> list[np.ndarray]:
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = train_examples + test_examples
    args.train_split = train_examples / args.num_samples
    args.seed = MNIST1D_SEED
    # The package seeds NumPy's and Python's global generators: this process's other users of them
    # (a user's script under the doctor) must not see a trial's data loading move their state.
    saved = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(saved[0])
        random.setstate(saved[1])
    return [data["x"].astype(np.float32), data["y"].astype(np.int32),
            data["x_test"].astype(np.float32), data["y_test"].astype(np.int32)]


def cache_dir() -> Path:
    """Where generated data sets are kept: $HARNESS_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, in
    tf-determinism-harness/."""
    if os.environ.get("HARNESS_CACHE_DIR"):
        return Path(os.environ["HARNESS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tf-determinism-harness"


def _cache_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes the cache file whole; a cache that cannot be written only means generating again next time."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        replace_atomically(path, buffer.getvalue())
    except OSError:
        pass


def _synthetic_mnist() -> Dataset:
    """MNIST-shaped (60,000 + 10,000 x 28x28x1, 10 classes) and learnable, from a fixed seed.

    Each class has a random prototype image; an example is its class's
    prototype blended with uniform noise, so a linear model gets most of it
    right and an MLP a little more, like MNIST.
    """
    rng = np.random.default_rng(SYNTHETIC_DATA_SEED)
    prototypes = rng.random((10, 28, 28, 1), dtype=np.float32)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, size=n).astype(np.int32)
        noise = rng.random((n, 28, 28, 1), dtype=np.float32)
        return 0.25 * prototypes[labels] + 0.75 * noise, labels

    train_x, train_y = make(60_000)
    test_x, test_y = make(10_000)
    return Dataset("synthetic", train_x, train_y, test_x, test_y, 10)


def _random_regression() -> Dataset:
    """100x10 uniform random inputs, targets linear in them plus noise; a test set of 100 more."""
    rng = np.random.default_rng(SYNTHETIC_DATA_SEED)
    weights = rng.normal(size=(10, 1)).astype(np.float32)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.random((n, 10), dtype=np.float32)
        y = x @ weights + 0.1 * rng.normal(size=(n, 1)).astype(np.float32)
        return x, y.astype(np.float32)

    train_x, train_y = make(100)
    test_x, test_y = make(100)
    return Dataset("random_regression", train_x, train_y, test_x, test_y, 0)


def _tfds(name: str, data_dir: str | None) -> Dataset:
    """A TFDS image classification data set with `train` and `test` splits, read whole into memory."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # TFDS raises several types for unknown names.
        raise UsageError(f"TFDS does not know a dataset called {name!r} ({first_line(error)}).") from None
    try:
        (train_x, train_y), (test_x, test_y) = (_read_split(name, split, data_dir) for split in ("train", "test"))
    except UsageError:
        raise
    except Exception:
        where = data_dir or tfds.core.constants.DATA_DIR
        raise UsageError(
            f"TFDS dataset {name!r} is not prepared in {where}; run `tfds build {name} --data_dir=DIR` "
            "on a machine with network access, then pass --data_dir=DIR."
        ) from None
    label_feature = builder.info.features["label"]
    return Dataset(f"tfds:{name}", train_x, train_y, test_x, test_y, int(label_feature.num_classes))


def _read_split(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """One split as (images, labels) arrays; read in batches, since some sources have no known size."""
    import tensorflow_datasets as tfds

    pieces = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True, download=False)
    images, labels = [], []
    for batch_images, batch_labels in tfds.as_numpy(pieces.batch(4096)):
        images.append(batch_images)
        labels.append(batch_labels)
    if not images:
        raise UsageError(f"TFDS dataset {name!r} has no examples in its {split!r} split.")
    return _images(np.concatenate(images)), np.concatenate(labels).astype(np.int32)


def _images(images: np.ndarray) -> np.ndarray:
    if images.ndim != 4:
        raise UsageError(f"expected images of shape (N, H, W, C), got {images.shape}.")
    return (images.astype(np.float32) / 255.0).astype(np.float32)


def split_pool(dataset: Dataset, seeds: SeedSet, config: TrialConfig) -> Split:
    """Holds out the config's `validation_fraction` of the training pool, chosen by the split seed; the kept
    examples keep their weights."""
    kept, held_out = split_indices(len(dataset.train_y), seeds, config.validation_fraction, config.max_train_examples)
    weights = example_weights(config, dataset)
    return Split(dataset, features.take(dataset.train_x, kept), dataset.train_y[kept],
                 features.take(dataset.train_x, held_out), dataset.train_y[held_out],
                 None if weights is None else weights[kept])


def example_weights(config: TrialConfig, dataset: Dataset) -> np.ndarray | None:
    """Each training pool example's weight in the loss, as Keras's fit weights it: the data's sample weights, or
    --class_weight's weight of its class (1 for a class not named; one-hot labels by their largest entry,
    float labels rounded, as Keras reads them); None when neither is given. Both at once are refused, as
    Keras's fit refuses them."""
    class_weights = config.class_weights()
    if not class_weights:
        return dataset.train_w
    if dataset.train_w is not None:
        raise UsageError(f"{dataset.name} comes with sample weights and --class_weight weights its classes too; "
                         "Keras's fit takes one or the other: drop one")
    labels = np.asarray(dataset.train_y)
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
    classes = np.round(labels).astype(np.int64)
    weights = np.ones(len(classes), np.float32)
    for label, weight in class_weights.items():
        weights[classes == label] = weight
    if not weights.any():
        raise UsageError(f"--class_weight gives every class of {dataset.name}'s training examples the weight 0; the "
                         "model would learn nothing")
    return weights


def split_indices(pool_size: int, seeds: SeedSet, validation_fraction: float,
                  max_train_examples: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices into the training pool; the split seed picks the held-out share."""
    if max_train_examples:
        pool_size = min(pool_size, max_train_examples)
    n_validation = int(round(validation_fraction * pool_size))
    if n_validation == 0:
        return np.arange(pool_size), np.arange(0)
    order = tf.random.experimental.stateless_shuffle(
        tf.range(pool_size, dtype=tf.int64), seed=[seeds.split, 0]).numpy()
    # Sorted so examples keep their pool order: the split seed decides which
    # examples are held out, and the shuffle seed alone decides the order.
    held_out, kept = np.sort(order[:n_validation]), np.sort(order[n_validation:])
    if len(kept) == 0:
        raise UsageError("the training pool is empty after holding out the validation share.")
    return kept, held_out


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Batches per epoch; a batch larger than the training examples is refused (an epoch would be one
    step on all of them, which is not the training the flag asked for)."""
    if batch_size > num_examples:
        raise UsageError(f"--batch_size={batch_size} is more than the {num_examples} training examples (after the "
                         f"validation share is held out); use at most {num_examples}")
    return -(-num_examples // batch_size)


def split_batches(split: Split, seeds: SeedSet, config: TrialConfig, deterministic: bool = True) -> tf.data.Dataset:
    """A trial's training batches of its split (training_batches), as its config says: batch size, epochs,
    augmentation, and each example's weight where the split has weights."""
    return training_batches(split.train_x, split.train_y, seeds, batch_size=config.batch_size, epochs=config.epochs,
                            augment=config.augment, deterministic=deterministic, weights=split.train_w)


def training_batches(x: Any, y: np.ndarray, seeds: SeedSet, *, batch_size: int,
                     epochs: int, augment: bool, deterministic: bool = True,
                     weights: np.ndarray | None = None) -> tf.data.Dataset:
    """All training batches of all epochs, in an order fixed by the shuffle seed: (x, y) elements, or
    (x, y, w) with each example's weight where `weights` are given (the third element Keras's fit reads as
    sample weights).

    Index-based: each epoch's permutation comes from a stateless shuffle keyed
    by (shuffle seed, epoch), and each batch is gathered from the in-memory
    arrays. The last batch of an epoch may be short, as in Keras `fit`. Several inputs keep their structure.
    `deterministic=False` lets the parallel map hand batches out as they finish: only the cost measurement
    (cost.py) asks for it, to time what tf.data's determinism costs; trials always keep it on.
    """
    inputs, labels = features.constant(x), tf.constant(y)
    example_weight = None if weights is None else tf.constant(weights, tf.float32)
    n = len(y)

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        order = epoch_order(n, tf.constant(seeds.shuffle, tf.int64), epoch)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def gather(batch_index: tf.Tensor, indices: tf.Tensor) -> tuple[Any, tf.Tensor]:
        batch_x = features.gather(inputs, indices)
        if augment:
            batch_x = augment_images(batch_x, tf.stack([tf.constant(seeds.augment, tf.int64), batch_index]))
        if example_weight is None:
            return batch_x, tf.gather(labels, indices)
        return batch_x, tf.gather(labels, indices), tf.gather(example_weight, indices)

    batches = (
        tf.data.Dataset.range(epochs)
        .flat_map(epoch_batches)
        .enumerate()
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        .prefetch(tf.data.AUTOTUNE)
    )
    options = tf.data.Options()
    options.deterministic = deterministic
    return batches.with_options(options)


def shares_batches(config: TrialConfig, seed_sets: list[SeedSet]) -> bool:
    """Whether trials with these seeds train on the same batches in the same order (split, shuffle and,
    when augmenting, augment seeds): a replica group then needs one copy of its batches."""
    def batches(seeds: SeedSet) -> tuple[int, ...]:
        return (seeds.split, seeds.shuffle, seeds.augment if config.augment else 0)

    return len({batches(seeds) for seeds in seed_sets}) == 1


def order_fingerprints(pool_size: int, seeds: SeedSet, config: TrialConfig) -> dict[str, str]:
    """SHA-256 of which examples a trial held out (`split_sha256`) and of the order it saw them in, every epoch's
    (`batch_order_sha256`), from the same functions its pipeline calls. Equal over a `split` or `shuffle`
    condition's runs, they show that the seed varied nothing, whatever its SD says (an order seeded from the
    epoch alone, as Keras after 3.15.1 seeds fit(shuffle=True), would)."""
    kept, held_out = split_indices(pool_size, seeds, config.validation_fraction, config.max_train_examples)
    shuffle_seed = tf.constant(seeds.shuffle, tf.int64)
    orders = [epoch_order(len(kept), shuffle_seed, tf.constant(epoch, tf.int64)).numpy()
              for epoch in range(config.epochs)]
    return {"split_sha256": array_sha256(held_out.astype(np.int64)),
            "batch_order_sha256": array_sha256(np.concatenate(orders).astype(np.int64))}


def epoch_order(n: int, shuffle_seed: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """One epoch's order of n examples: a stateless permutation keyed by (shuffle seed, epoch)."""
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([shuffle_seed, epoch]))


def check_augment(config: TrialConfig, dataset: Dataset) -> None:
    """Augmentation shifts images: any other data set is bad input, said before a trial starts."""
    if config.augment and not dataset.is_image:
        raise UsageError(f"--augment needs an image dataset, not {dataset.name!r}.")


def augment_images(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Gaussian pixel noise (sd 0.05) and, for images of 16 pixels or more, shifts up to 1/8 of their size.

    A stateless function of (augment seed, batch index), so it is the same in
    every process and independent of every other source. Images under 16
    pixels get no shift: one pixel of an 8x8 digit is an eighth of it, enough
    to cost accuracy rather than add variety.
    """
    height, width = images.shape[1], images.shape[2]
    max_shift = min(height, width) // 8 if min(height, width) >= 16 else 0
    batch = tf.shape(images)[0]
    noise_seed = tf.random.experimental.stateless_fold_in(seed, 0)
    images = images + 0.05 * tf.random.stateless_normal(tf.shape(images), seed=noise_seed)
    if not max_shift:
        return images
    shifts = tf.random.stateless_uniform(
        tf.stack([batch, 2]), seed=tf.random.experimental.stateless_fold_in(seed, 1),
        minval=-max_shift, maxval=max_shift + 1, dtype=tf.int32)
    shifts = tf.cast(shifts, tf.float32)
    zeros, ones = tf.zeros([batch, 1]), tf.ones([batch, 1])
    # Projective transform rows map output to input pixels: a shift by (dx, dy)
    # reads from (x - dx, y - dy).
    transforms = tf.concat(
        [ones, zeros, -shifts[:, :1], zeros, ones, -shifts[:, 1:], zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([height, width]),
        fill_value=0.0, interpolation="NEAREST", fill_mode="CONSTANT")
