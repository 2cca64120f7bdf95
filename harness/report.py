"""`python -m harness.report --input_dir=DIR`: a study as plots people can read without the JSON.

Writes DIR/report.html and DIR/report.md with PNG plots beside them (accuracy, SD by source, step
time, loss curves; each also as NAME.narrow.png, drawn for phones) and the environment table; what each
plot shows: harness/analysis/study_report.py.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from harness import cli
from harness.analysis import build_report  # imports matplotlib and TensorFlow when called
from harness.errors import UsageError
from harness.flags import value_or

FLAGS = flags.FLAGS
# The shared flags report reads, which its --help lists.
for _name in ("input_dir", "output_dir"):
    flags.declare_key_flag(_name)


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
