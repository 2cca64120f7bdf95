"""Shared helpers: small real trials in-process, and the programs run as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The user docs: what tests/programs/test_docs.py and test_documented_commands.py hold to the code.
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# A trial that exercises every source of randomness and still takes about a second.
SMALL = dict(epochs=2, max_train_examples=400, validation_fraction=0.2, augment=True,
             dropout_rate=0.5, steps_per_loop=5)


def run_program(module: str, *args: str, timeout: float = 300, env_vars: dict[str, str] | None = None,
                **popen) -> subprocess.CompletedProcess:
    """`python -m module args...` in a fresh process, from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_vars or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)


def kill_after_lines(args: list[str], path: Path, lines: int, **popen) -> None:
    """Runs a program until `path` holds `lines` records (two minutes at most), then SIGKILLs it."""
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    deadline = time.time() + 120
    while time.time() < deadline and (not path.exists() or path.read_bytes().count(b"\n") < lines):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture
def small_config():
    from harness.trial.config import load_benchmark

    return load_benchmark("digits_mlp", **SMALL)


STUDY_CONDITIONS = "control,kernels,init,all,bit"


@pytest.fixture(scope="session")
def small_study(tmp_path_factory) -> Path:
    """A real study (5 conditions x 3 repeats of a small digits MLP) on disk, run once per test session.

    Holds trials.jsonl and summary.json as `harness.bench` writes them; tests
    that change them work on copies.
    """
    from harness.analysis.summary import build_summary, write_summary
    from harness.platform import environment
    from harness.schema import SUMMARY_FILE
    from harness.studies import conditions, determinism_cost, study_runner
    from harness.trial.config import load_benchmark
    from harness.trial.cost import DEFAULT_BLOCKS
    from harness.trial.seeds import SeedSet

    output_dir = tmp_path_factory.mktemp("small_study")
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions(STUDY_CONDITIONS)
    specs = study_runner.plan(base, 0, seeds, chosen, 3, "smallstudy")
    study_runner.execute(specs, output_dir)
    # As harness.bench does: the cost of determinism measured in interleaved blocks after the trials (cost.json).
    cost = determinism_cost.ensure(base, seeds, chosen, output_dir, "smallstudy", DEFAULT_BLOCKS)
    summary = build_summary(study_id="smallstudy", base_config=base.as_dict(), base_seeds=seeds.as_dict(),
                            conditions=chosen, repeats=3, records=study_runner.study_records(specs, output_dir),
                            environment=environment.capture(), wall_s=1.0, directory=output_dir,
                            cost=cost)
    write_summary(output_dir / SUMMARY_FILE, summary)
    return output_dir


# A model file as users write it: no seed anywhere, not built (no Input), compiled.
USER_MODEL = """\
import keras
import tensorflow as tf


def create_model(units=32, dropout=0.5):
    model = keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def uncompiled():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


def not_a_model():
    return {"layers": 3}


def broken():
    raise RuntimeError("boom")


def wrong_input():
    return keras.Sequential([keras.layers.Reshape((5, 5)), keras.layers.Dense(10)])


def expects_ten_inputs():
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class HostSGD(keras.optimizers.SGD):
    # SGD through a host callback, an op XLA cannot compile.

    def update_step(self, gradient, variable, learning_rate):
        gradient = tf.numpy_function(lambda g: g, [gradient], gradient.dtype, stateful=False)
        super().update_step(tf.reshape(gradient, variable.shape), variable, learning_rate)


def host_optimizer():
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer=HostSGD(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


CONSTANT = 3
"""
TRAINING = dict(epochs=2, steps_per_loop=5)


@pytest.fixture
def user_files(tmp_path):
    """model.py and data.npz (400 training and 200 test digits) in a fresh directory."""
    write_user_files(tmp_path / "model.py", tmp_path / "data.npz")
    return tmp_path


def write_user_files(model: Path, data: Path) -> None:
    """USER_MODEL's file, and an .npz of 400 training and 200 test digits, at these paths."""
    from harness.trial.datasets import load_dataset

    digits = load_dataset("digits")
    np.savez(data, x_train=digits.train_x[:400], y_train=digits.train_y[:400], x_test=digits.test_x[:200],
             y_test=digits.test_y[:200])
    model.write_text(USER_MODEL)


def user_config(files, function="create_model", **overrides):
    """The config of a trial of model.py's `function` on data.npz (see `user_files`)."""
    from harness.trial.config import user_model_config

    return user_model_config(model=f"{files}/model.py:{function}", dataset=f"npz:{files}/data.npz",
                             **{**TRAINING, **overrides})


def run_conditions(config, names, repeats, output_dir):
    """A study of these conditions, in this process; its records."""
    from harness.studies import conditions, study_runner
    from harness.trial.seeds import SeedSet

    specs = study_runner.plan(config, 0, SeedSet.from_base(0), conditions.parse_conditions(names), repeats, "user")
    study_runner.execute(specs, output_dir)
    return study_runner.study_records(specs, output_dir)


# A study trial: every source of randomness, about a second.
TINY = dict(epochs=2, max_train_examples=300, validation_fraction=0.2, augment=True, dropout_rate=0.5,
            steps_per_loop=5)


def plan_conditions(names, repeats=2, replicas=1, **overrides):
    """(base config, base seeds, the plan) of a tiny digits_mlp study of these conditions (`replicas`: as
    --replicas)."""
    from harness.studies import conditions, study_runner
    from harness.trial.config import load_benchmark
    from harness.trial.seeds import SeedSet

    base = load_benchmark("digits_mlp", **{**TINY, **overrides})
    seeds = SeedSet.from_base(0)
    return base, seeds, study_runner.plan(base, 0, seeds, conditions.parse_conditions(names), repeats, "test",
                                           replicas)


# The programs that score a configuration over seeds (reeval, compare_configs, tune), on a small digits MLP.
SCORING_FLAGS = ["--epochs=2", "--max_train_examples=400", "--validation_fraction=0.2", "--steps_per_loop=5"]


# A user's script with the callback, whose Dropout layer is made before the seed: runs differ in the masks.
CALLBACK_SCRIPT = """\
import sys
import keras
import numpy as np
from harness.keras import FingerprintCallback

dropout = keras.layers.Dropout(0.5)
keras.utils.set_random_seed(0)
x = np.random.random((128, 10)).astype("float32")
y = (x.sum(axis=1) > 5).astype("int32")
model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), dropout,
                          keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[FingerprintCallback(sys.argv[1], every="step")])
"""
