"""`python -m harness.worker --output_dir=DIR`: runs the trial specs given as a JSON list on stdin.

Started by `harness.studies.study_runner` for trials that need a fresh process or another
process environment; trials of one replica group train together here, as in the parent (the list
holds every member of a group, and members already recorded are trained but not written again).
Prints one JSON line per finished trial for the parent's progress; records go straight to
DIR/trials.jsonl.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from absl import flags

import harness.flags  # noqa: F401 (defines --output_dir and --input_dir)
from harness import cli
from harness.platform import determinism, processes
from harness.schema import TRIALS_FILE
from harness.studies.records import read_records
from harness.studies.study_runner import TrialSpec, run_in_this_process

flags.mark_flag_as_required("output_dir")  # the study directory
flags.DEFINE_integer("parent_pid", None, "The process that started this worker (it holds the study directory's "
                     "lock); the worker ends when it does.")


def main(argv: list[str]) -> int:
    del argv
    if flags.FLAGS.parent_pid is not None:
        processes.die_with_parent(flags.FLAGS.parent_pid)
    specs = [TrialSpec.from_json(item) for item in json.load(sys.stdin)]
    if specs:
        # Thread pools are fixed once per process, before the first op runs.
        determinism.set_thread_pools(specs[0].config.intra_op_threads, specs[0].config.inter_op_threads)
    output_dir = Path(flags.FLAGS.output_dir)
    recorded = {r.get("trial_key") for r in read_records(output_dir / TRIALS_FILE)}

    def finished(record: dict) -> None:
        print(json.dumps({"condition": record["condition"], "status": record["status"]["code"],
                          "wall_s": record["timing"]["wall_s"]}), flush=True)

    run_in_this_process([s for s in specs if s.key not in recorded], specs, output_dir, recorded, finished)
    return 0


if __name__ == "__main__":
    cli.run(main)
