"""Child processes that cannot outlive the run that started them.

A worker appends records to its study directory, which only the run holding the
directory's lock may write. Were the parent killed (SIGKILL, the OOM killer), a
worker left running would go on appending while a resume takes the lock: two
writers, duplicate trials. So a worker dies with its parent: Linux's
PR_SET_PDEATHSIG has the kernel kill it the moment the parent exits; elsewhere a
thread watches the parent's pid.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1
# How often the fallback watcher looks for its parent where the kernel cannot be asked to.
_WATCH_INTERVAL_S = 0.2


def die_with_parent(parent_pid: int) -> None:
    """Ends this process when `parent_pid` (the process that started it) ends, from now on; at once if it
    has already ended (it died before this process got here)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                _exit_if_orphaned(parent_pid)  # the parent may have died before prctl
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch, args=(parent_pid,), daemon=True, name="die-with-parent").start()


def _watch(parent_pid: int) -> None:
    while True:
        _exit_if_orphaned(parent_pid)
        time.sleep(_WATCH_INTERVAL_S)


def _exit_if_orphaned(parent_pid: int) -> None:
    if os.getppid() != parent_pid:
        os._exit(128 + signal.SIGKILL)  # as if killed with the parent; nothing more is written
