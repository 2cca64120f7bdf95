"""Shared helpers: small real trials in-process, and the programs run as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

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
    from harness.studies import conditions, study_runner
    from harness.trial.config import load_benchmark
    from harness.trial.seeds import SeedSet

    output_dir = tmp_path_factory.mktemp("small_study")
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions(STUDY_CONDITIONS)
    specs = study_runner.plan(base, 0, seeds, chosen, 3, "smallstudy")
    study_runner.execute(specs, output_dir)
    summary = build_summary(study_id="smallstudy", base_config=base.as_dict(), base_seeds=seeds.as_dict(),
                            conditions=chosen, repeats=3, records=study_runner.study_records(specs, output_dir),
                            environment=environment.capture(), wall_s=1.0)
    write_summary(output_dir / SUMMARY_FILE, summary)
    return output_dir
