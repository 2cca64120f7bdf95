"""Keeping every core busy while a trial runs: the `env:load=1` condition.

"CPU load changes my results" is folklore until measured: a trial run while
other processes spin on every core has the same seeds and config as
`control`, so the study says whether its bits match.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

# Each spins one core at 100% in pure Python until killed.
_SPIN = "while True:\n    pass"


@contextlib.contextmanager
def busy_cores(count: int | None = None) -> Iterator[int]:
    """Runs `count` (default: every usable core) spinning processes for the duration; yields the count."""
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(count)]
    try:
        yield count
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
