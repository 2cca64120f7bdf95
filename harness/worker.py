"""`python -m harness.worker --output_dir=DIR`: runs the trial specs given as a JSON list on stdin.

Started by `harness.studies.study_runner` for trials that need a fresh process or another
process environment. Prints one JSON line per finished trial for the parent's
progress; records go straight to DIR/trials.jsonl.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags

import harness.flags  # noqa: F401 (defines --output_dir and --input_dir)
from harness import cli
from harness.platform import determinism
from harness.studies.study_runner import TrialSpec, run_and_record

flags.mark_flag_as_required("output_dir")  # the study directory


def main(argv: list[str]) -> int:
    del argv
    specs = [TrialSpec.from_json(item) for item in json.load(sys.stdin)]
    if specs:
        # Thread pools are fixed once per process, before the first op runs.
        determinism.set_thread_pools(specs[0].config.intra_op_threads, specs[0].config.inter_op_threads)
    for spec in specs:
        record = run_and_record(spec, Path(flags.FLAGS.output_dir))
        print(json.dumps({"condition": spec.condition, "status": record["status"]["code"],
                          "wall_s": record["timing"]["wall_s"]}), flush=True)
    return 0


if __name__ == "__main__":
    cli.run(main)
