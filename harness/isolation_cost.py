"""What fresh processes cost: the same study run in-process and one process per trial, side by side.

    python -m harness.isolation_cost [--repeats=5] [--conditions=control,init]

Runs `harness.bench` twice on the embedded digits and prints wall time,
seconds per trial, and whether the two runs gave identical weight hashes
(they must: every random op is stateless, so isolation changes no bits).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from harness import cli
from harness.errors import UsageError, meaningful_lines
from harness.flags import value_or
from harness.studies.records import read_records
from harness.table import format_table

# The shared flags isolation_cost reads (and passes on to the studies it runs), which its --help lists.
for _name in ("repeats", "conditions"):
    flags.declare_key_flag(_name)


def _run(isolation: str, output_dir: Path) -> float:
    args = [sys.executable, "-m", "harness.bench", f"--isolation={isolation}", f"--repeats={value_or('repeats', 5)}",
            f"--conditions={value_or('conditions', 'control,init')}", f"--output_dir={output_dir}"]
    started = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        # The flags were checked here already; what is left (a lost trial, a full disk) bench said in a sentence.
        said = (meaningful_lines(result.stderr) or [f"exit code {result.returncode}"])[-1]
        raise UsageError(f"harness.bench --isolation={isolation} failed: {said.removeprefix('error: ')}")
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        rows, hashes = [], {}
        for isolation in ("inprocess", "process"):
            wall = _run(isolation, Path(tmp) / isolation)
            records = read_records(Path(tmp) / isolation / "trials.jsonl")
            hashes[isolation] = {r["trial_key"]: r["fingerprints"].get("weights_sha256") for r in records}
            rows.append([isolation, len(records), wall, wall / len(records)])
    print(format_table(["isolation", "trials", "wall s", "s per trial"], rows))
    same = hashes["inprocess"] == hashes["process"]
    print(f"weight hashes identical across isolation modes: {'yes' if same else 'NO'}; "
          f"process isolation costs {rows[1][2] / rows[0][2]:.1f}x the wall time.")


if __name__ == "__main__":
    cli.run(main, writes_records=True)
