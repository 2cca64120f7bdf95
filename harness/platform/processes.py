"""Child processes that cannot outlive the run that started them.

A worker appends records to its study directory, which only the run holding the
directory's lock may write. Were the parent killed (SIGKILL, the OOM killer), a
worker left running would go on appending while a resume takes the lock: two
writers, duplicate trials. So a worker dies with its parent: Linux's
PR_SET_PDEATHSIG, set as the worker is started (`parent_death_signal`), has the
kernel kill it the moment the parent exits; elsewhere a thread the worker
starts (`die_with_parent`) watches the parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
# How often the fallback watcher looks for its parent where the kernel cannot be asked to.
_WATCH_INTERVAL_S = 0.2


def parent_death_signal() -> Callable[[], None] | None:
    """A `preexec_fn` for a child that must die with this process: it has the kernel SIGKILL the child when
    this process ends, set in the child before it runs a line of its own (a worker importing TensorFlow for
    seconds is covered too); None where the kernel cannot be asked (not Linux), where the child's own
    `die_with_parent` watches instead. It does no more than one system call, safe between fork and exec."""
    prctl = _prctl()  # looked up now: the child only calls it
    if prctl is None:
        return None
    parent = os.getpid()

    def set_in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _exit_if_orphaned(parent)  # the parent died between fork and prctl

    return set_in_child


def die_with_parent(parent_pid: int) -> None:
    """Ends this process when `parent_pid` (the process that started it) ends, from now on; at once if it
    has already ended (it died before this process got here)."""
    prctl = _prctl()
    if prctl is not None and prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        _exit_if_orphaned(parent_pid)  # the parent may have died before prctl
        return
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="die-with-parent").start()


def _prctl() -> Callable[..., int] | None:
    """Linux's prctl(2) from the C library; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _watch(parent_pid: int) -> None:
    while True:
        _exit_if_orphaned(parent_pid)
        time.sleep(_WATCH_INTERVAL_S)


def _exit_if_orphaned(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        os._exit(128 + signal.SIGKILL)  # as if killed with the parent; nothing more is written


def seconds_since_start() -> float | None:
    """How long this process has run (Linux: its start in /proc/self/stat against the uptime), so that a
    program's "in all" counts Python's start and TensorFlow's import too; None where /proc does not say."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            # Field 22 (starttime, clock ticks after boot) comes after the parenthesized command name.
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return max(0.0, float(uptime.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return None
