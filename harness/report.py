"""`python -m harness.report --input_dir=DIR`: a study as plots people can read without the JSON.

Writes DIR/report.html and DIR/report.md, and beside them PNG plots:
- accuracy.png: every trial's test metric per condition (identical runs fall on one point);
- sd_by_source.png: each condition's SD with its 95% interval, beside `all`'s;
- step_time.png: steady-state step time per condition, op determinism on vs off;
- loss_curves.png: per-epoch train loss of every trial, one panel per condition;
and the environment the study ran in as a table.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from harness import cli
from harness.analysis.study_report import build_report
from harness.errors import UsageError
from harness.flags import value_or

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    del argv
    if not FLAGS.input_dir:
        raise UsageError("give --input_dir=DIR, a study directory written by harness.bench")
    input_dir = Path(FLAGS.input_dir)
    if not input_dir.is_dir():
        raise UsageError(f"{input_dir}: no such study directory")
    written = build_report(input_dir, Path(value_or("output_dir", input_dir)))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    cli.run(main)
