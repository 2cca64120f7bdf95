"""Data: the embedded digits, MNIST-1D, synthetic sets, the real TFDS loading code under mock data."""

import hashlib
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from harness.errors import UsageError
from harness.trial import datasets
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial


def test_embedded_digits_are_the_uci_test_set():
    digits = datasets.load_dataset("digits")
    assert digits.train_x.shape == (1437, 8, 8, 1) and digits.test_x.shape == (360, 8, 8, 1)
    assert digits.train_x.min() == 0.0 and digits.train_x.max() == 1.0
    assert set(np.unique(digits.train_y)) == set(range(10))


def test_synthetic_mnist_has_mnist_shapes_and_is_fixed():
    synthetic = datasets.load_dataset("synthetic")
    assert synthetic.train_x.shape == (60_000, 28, 28, 1) and synthetic.test_x.shape == (10_000, 28, 28, 1)
    assert synthetic.num_classes == 10
    assert datasets._synthetic_mnist().train_x[:3].tobytes() == synthetic.train_x[:3].tobytes()


@pytest.mark.slow
def test_mnist1d_is_generated_alike_in_a_fresh_process_and_from_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    np.random.seed(7)
    random.seed(7)
    before = np.random.get_state()[1].copy(), random.getstate()
    generated = datasets._mnist1d(400, 1_000)  # noqa: SLF001  not load_dataset's in-process cache: the disk's
    # The package seeds the global generators; the loader puts them back.
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert generated.train_x.shape == (400, 40) and generated.test_x.shape == (1_000, 40)
    assert generated.num_classes == 10 and set(np.unique(generated.test_y)) == set(range(10))
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1 and not list(tmp_path.glob(".*"))  # whole, no temporary
    again = datasets._mnist1d(400, 1_000)  # noqa: SLF001  read from the cache file now
    assert again.test_x.tobytes() == generated.test_x.tobytes()
    digest = "import hashlib; from harness.trial import datasets; d = datasets._mnist1d(400, 1_000); " \
             "print(hashlib.sha256(d.train_x.tobytes() + d.test_y.tobytes()).hexdigest())"
    fresh = subprocess.run([sys.executable, "-c", digest], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HARNESS_CACHE_DIR": str(tmp_path / "fresh")})
    assert fresh.stdout.strip() == hashlib.sha256(generated.train_x.tobytes() + generated.test_y.tobytes()).hexdigest()


def test_a_damaged_mnist1d_cache_is_generated_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    whole = datasets._mnist1d(400, 1_000)  # noqa: SLF001  writes the cache
    (cached,) = tmp_path.glob("mnist1d-*.npz")
    cached.write_bytes(cached.read_bytes()[:100])  # cut short, as a full disk or a kill could leave it
    again = datasets._mnist1d(400, 1_000)  # noqa: SLF001
    assert again.train_x.tobytes() == whole.train_x.tobytes()
    with np.load(cached) as repaired:
        assert repaired["test_y"].tobytes() == whole.test_y.tobytes()


def test_split_seed_picks_the_validation_share():
    digits = datasets.load_dataset("digits")
    config = load_benchmark("digits_mlp", validation_fraction=0.1)
    a = datasets.split_pool(digits, SeedSet.from_base(0), config)
    b = datasets.split_pool(digits, SeedSet.from_base(0), config)
    c = datasets.split_pool(digits, SeedSet.from_base(0, split=99), config)
    assert len(a.validation_y) == 144 and len(a.train_y) == 1437 - 144
    assert np.array_equal(a.validation_x, b.validation_x)
    assert not np.array_equal(a.validation_x, c.validation_x)


def test_batches_depend_on_the_shuffle_seed_only_through_order():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10, dtype=np.int32)

    def labels(seeds):
        batches = datasets.training_batches(x, y, seeds, batch_size=4, epochs=2, augment=False)
        return [b[1].numpy().tolist() for b in batches]

    first = labels(SeedSet.from_base(0))
    assert [len(b) for b in first] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(first[:3], [])) == list(range(10))  # every example once per epoch
    assert first[:3] != first[3:]  # and a different order in each epoch
    assert first == labels(SeedSet.from_base(0))
    assert first != labels(SeedSet.from_base(0, shuffle=1))


def test_tfds_path_loads_and_trains_under_mock_data():
    datasets.load_dataset.cache_clear()
    try:
        with tfds.testing.mock_data(num_examples=96):
            mnist = datasets.load_dataset("tfds:mnist")
            config = load_benchmark("mnist_mlp", epochs=1, steps_per_loop=2)
            result = run_trial(config, SeedSet.from_base(0))
    finally:
        datasets.load_dataset.cache_clear()
    assert mnist.train_x.shape == (96, 28, 28, 1) and mnist.num_classes == 10
    assert mnist.train_x.dtype == np.float32 and mnist.train_x.max() <= 1.0
    assert result.status["code"] == "ok"
    assert result.metrics["test_examples"] == 96


def test_unknown_tfds_name_is_a_usage_error():
    with pytest.raises(UsageError, match="does not know"):
        datasets.load_dataset("tfds:no_such_dataset_anywhere")
