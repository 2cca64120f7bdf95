"""The console's progress: a bar on a terminal with other stderr lines above it, plain lines elsewhere (one per
trial or replica group), and an ETA from each condition's measured rate."""

import io
import os
import subprocess
import sys

from conftest import REPO

from harness.studies.progress import Outcome, Progress


def test_progress_is_a_bar_on_a_terminal_and_a_plain_line_per_trial_or_group_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log = io.StringIO()
    plain = Progress(["init", "all", "all", "all"], total=5, stream=log)
    plain.finished([Outcome("init", "ok", 1.25)])
    plain.finished([Outcome("all", "ok", 3.0), Outcome("all", "nan_loss", 3.0)])
    plain.finished([Outcome("all", "ok", 0.5)])
    plain.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("[2/5] init: ok in 1.2s; ETA ")
    # A replica group trains as one: one line, its time once.
    assert lines[1].startswith("[4/5] all: group of 2 in 3.0s (1 ok, 1 nan_loss); ETA ")
    assert lines[2] == "[5/5] all: ok in 0.5s; done" and len(lines) == 3
    terminal = Terminal()
    bar = Progress(["init", "all"], total=3, stream=terminal)
    bar.finished([Outcome("init", "ok", 1.25)])
    bar.finished([Outcome("all", "ok", 1.0)])
    bar.close()
    final = terminal.getvalue().split("\r")[-1]
    # The finished bar keeps its counts.
    assert "3/3" in final and "all: ok in 1.0s; done" in final and "[3/3] all" not in terminal.getvalue()


def test_the_eta_comes_from_each_conditions_own_rate():
    now = [0.0]
    progress = Progress(["control"] * 4 + ["xla"] * 4, total=8, stream=io.StringIO(), clock=lambda: now[0])
    now[0] = 2.0
    progress.finished([Outcome("control", "ok", 2.0)])
    # No xla trial has finished: it counts the mean of all so far.
    assert progress.eta_s() == 3 * 2.0 + 4 * 2.0
    now[0] = 22.0
    progress.finished([Outcome("xla", "ok", 20.0)])
    assert progress.eta_s() == 3 * 2.0 + 3 * 20.0
    now[0] = 24.0
    # A group of two control trials in 2 s: 1 s each.
    progress.finished([Outcome("control", "ok", 2.0), Outcome("control", "ok", 2.0)])
    assert progress.eta_s() == 1 * (4.0 / 3) + 3 * 20.0


def test_lines_written_to_stderr_while_the_bar_is_drawn_land_above_it_not_inside():
    """TensorFlow's C++ logging writes to file descriptor 2 directly (`E0000 ... oneDNN supports DT_INT64 only
    on platforms with AVX-512`): on a terminal, such a line is its own line, above the bar."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    code = ("import os, sys\n"
            "from harness.studies.progress import Outcome, Progress\n"
            "progress = Progress(['control', 'control'], total=2)\n"
            "progress.finished([Outcome('control', 'ok', 1.0)])\n"
            "os.write(2, b'E0000 00:00:1 cpu_feature_guard: a C++ line\\n')\n"
            "print('a Python warning', file=sys.stderr)\n"
            "progress.finished([Outcome('control', 'ok', 1.0)])\n"
            "progress.close()\n"
            "print('after the bar', file=sys.stderr)\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a 120-column terminal
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=follower, env={**os.environ, "PYTHONPATH": str(REPO)})
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    assert child.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", shown.decode())
    pieces = [piece.strip() for line in text.splitlines() for piece in line.split("\r") if piece.strip()]
    for said in ("E0000 00:00:1 cpu_feature_guard: a C++ line", "a Python warning", "after the bar"):
        assert said in pieces, (said, pieces)
    assert any("2/2" in piece and "done" in piece for piece in pieces), pieces
