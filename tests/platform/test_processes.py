"""A worker cannot outlive the run that started it: killed with its parent, by the kernel or by its watcher."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

# A parent that starts a child and prints its pid; the child sleeps until its parent's end ends it too.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {child!r}])
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = {
    "the kernel (PR_SET_PDEATHSIG)": "import os, time\nfrom harness.platform import processes\n"
                                     "processes.die_with_parent(os.getppid())\ntime.sleep(120)",
    "the watcher thread (elsewhere)": "import os, threading, time\nfrom harness.platform import processes\n"
                                      "threading.Thread(target=processes._watch, args=(os.getppid(),), daemon=True)"
                                      ".start()\ntime.sleep(120)",
}


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("by", list(CHILD))
def test_a_child_dies_when_its_parent_is_killed(by):
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(child=CHILD[by])], cwd=REPO, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(parent.stdout.readline())
    time.sleep(1.5)  # the child has imported the harness and asked to die with its parent
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 5
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
