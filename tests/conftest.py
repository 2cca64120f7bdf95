"""Shared helpers: small real trials in-process, and the programs run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A trial that exercises every source of randomness and still takes about a second.
SMALL = dict(epochs=2, max_train_examples=400, validation_fraction=0.2, augment=True,
             dropout_rate=0.5, steps_per_loop=5)


def run_program(module: str, *args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """`python -m module args...` in a fresh process, from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)


@pytest.fixture
def small_config():
    from harness.config import load_benchmark

    return load_benchmark("digits_mlp", **SMALL)
