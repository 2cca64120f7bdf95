"""A study's progress on the console: done/total, what just finished, and an ETA from measured rates.

On a terminal, a progress bar (tqdm) on stderr; everything else written to stderr while it is drawn
(TensorFlow's C++ start-up lines, warnings, logging) is printed above it, never inside it. Otherwise (a CI
log, a file) one plain line per trial, or per replica group: a group trains as one, so it is one line.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from harness.redaction import redact_text


class Outcome(NamedTuple):
    """One finished trial, as the console shows it."""

    condition: str
    status: str
    wall_s: float


class Progress:
    """`finished` gets the outcomes of one trial, or of one replica group (its members share one wall time).

    The ETA sums, over the trials still to run, the mean time a trial of the same condition took so far
    (the time between finishes, so a group of 10 counts a tenth of its time per member); a condition with
    no finished trial yet counts the mean of all. Conditions differ by far (XLA compiles, a fresh process
    imports TensorFlow), so one overall rate would jump at each new condition.
    """

    def __init__(self, pending: Sequence[str], total: int, after_each: Callable[[], None] | None = None,
                 stream=None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.done = total, total - len(pending)
        self.remaining = collections.Counter(pending)
        # Per condition: seconds spent and trials finished so far (their ratio is its rate).
        self.spent: collections.Counter[str] = collections.Counter()
        self.finished_n: collections.Counter[str] = collections.Counter()
        self.after_each = after_each
        self.clock = clock
        self.last = clock()
        self.stream = stream or sys.stderr
        self.bar = self.above = None
        if pending and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.above = _LinesAboveBar() if self.stream is sys.stderr else None
            self.bar = tqdm(total=total, initial=self.done, unit="trial", desc="study", dynamic_ncols=True,
                            file=self.above.terminal if self.above else self.stream,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def finished(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        now = self.clock()
        for number, outcome in enumerate(outcomes):
            # The first member took the group's time since the last finish; the others, none more.
            self.spent[outcome.condition] += now - self.last if number == 0 else 0.0
            self.finished_n[outcome.condition] += 1
            self.remaining[outcome.condition] -= 1
        self.last = now
        self.done += len(outcomes)
        said = _said(outcomes)
        eta = f"ETA {duration(self.eta_s())}" if self.done < self.total else "done"
        if self.bar is not None:
            self.bar.set_postfix_str(f"{said}; {eta}", refresh=False)
            self.bar.update(len(outcomes))
        else:
            print(f"[{self.done}/{self.total}] {said}; {eta}", file=self.stream, flush=True)
        if self.after_each:
            self.after_each()

    def eta_s(self) -> float:
        count = sum(self.finished_n.values())
        overall = sum(self.spent.values()) / count if count else 0.0
        return sum(left * (self.spent[c] / self.finished_n[c] if self.finished_n[c] else overall)
                   for c, left in self.remaining.items() if left > 0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.above is not None:
            self.above.close()


def phase(text: str, stream=None) -> None:
    """One line for a phase that can take more than a couple of seconds with nothing else to show (the cost
    measurement after the last trial, the summary, the report's plots): what the program is doing now, so no
    minute passes in silence."""
    print(f"... {text}", file=stream or sys.stderr, flush=True)


def _said(outcomes: Sequence[Outcome]) -> str:
    first = outcomes[0]
    if len(outcomes) == 1:
        return f"{first.condition}: {first.status} in {first.wall_s:.1f}s"
    counts = collections.Counter(o.status for o in outcomes)
    statuses = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{first.condition}: group of {len(outcomes)} in {first.wall_s:.1f}s ({statuses})"


def duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


class _LinesAboveBar:
    """While the bar is drawn, the process's stderr (file descriptor 2, which TensorFlow's C++ logging writes
    to directly) goes through a pipe; each line read from it is printed above the bar (tqdm.write), and the
    bar itself draws on a copy of the terminal's descriptor."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        self.terminal = os.fdopen(os.dup(2), "w", buffering=1)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.reader = threading.Thread(target=self._copy, args=(read,), daemon=True)
        self.reader.start()

    def _copy(self, read: int) -> None:
        from tqdm import tqdm

        with os.fdopen(read, "rb") as lines:
            for line in lines:
                # TensorFlow's C++ logging and worker processes write here directly, past cli.run's redaction.
                text = redact_text(line.decode(errors="replace").rstrip("\n"))
                try:
                    tqdm.write(text, file=self.terminal)
                except Exception:  # noqa: BLE001 (a line is never lost: written as it came, bar or not)
                    os.write(self.saved, (text + "\n").encode())

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's last writer goes: the reader reads to the end and stops
        # A process started while the bar was drawn may still hold the pipe: its lines come when it ends.
        self.reader.join(timeout=60)
        os.close(self.saved)
        self.terminal.close()
