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
from typing import TYPE_CHECKING, Any

from absl import flags

import harness.flags  # noqa: F401 (defines --output_dir and --input_dir)
from harness import cli
from harness.errors import UsageError, first_line
from harness.platform import determinism, processes
from harness.schema import TRIALS_FILE
from harness.studies.records import load_document, read_records
from harness.trial.seeds import SeedSet

if TYPE_CHECKING:
    from harness.studies.study_runner import TrialSpec

# The study machinery (TensorFlow) is imported where the specs are read and run: --help does not wait for it.
flags.mark_flag_as_required("output_dir")  # the study directory
flags.declare_key_flag("output_dir")  # shared: its --help lists it with the worker's own
flags.DEFINE_integer("parent_pid", None, "The process that started this worker (it holds the study directory's "
                     "lock); the worker ends when it does.", lower_bound=1, upper_bound=2**22)  # Linux's pid_max


def main(argv: list[str]) -> int:
    del argv
    from harness.studies.study_runner import outcome, run_in_this_process

    if flags.FLAGS.parent_pid is not None:
        processes.die_with_parent(flags.FLAGS.parent_pid)
    specs = specs_from(sys.stdin.buffer.read())
    if specs:
        # Thread pools are fixed once per process, before the first op runs.
        determinism.set_thread_pools(specs[0].config.intra_op_threads, specs[0].config.inter_op_threads)
    output_dir = Path(flags.FLAGS.output_dir)
    recorded = {r.get("trial_key") for r in read_records(output_dir / TRIALS_FILE)}

    def finished(records: list[dict]) -> None:
        # One line per trial or replica group, for the parent's progress.
        print(json.dumps({"trials": [outcome(record) for record in records]}), flush=True)

    run_in_this_process([s for s in specs if s.key not in recorded], specs, output_dir, recorded, finished)
    return 0


def specs_from(stdin: bytes) -> list[TrialSpec]:
    """The trial specs of stdin, as study_runner writes them (`TrialSpec.to_json`); anything else, one sentence
    before any trial runs (the parent stops the study with it)."""
    document = load_document(stdin, "stdin")
    if not isinstance(document, list) or not all(isinstance(item, dict) for item in document):
        raise UsageError("stdin must hold a JSON list of trial specs (objects), as the study that starts a worker "
                         "writes it")
    return [_spec(item, number) for number, item in enumerate(document, start=1)]


def _spec(item: dict[str, Any], number: int) -> TrialSpec:
    from harness.studies.study_runner import TrialSpec

    try:
        spec = TrialSpec.from_json(item)
        # SeedSet itself takes any value; from_base with every source given checks each is a seed.
        SeedSet.from_base(0, **spec.seeds.as_dict())
    except KeyError as error:
        raise UsageError(f"trial spec {number} of stdin has no {first_line(error)}") from None
    except (TypeError, ValueError) as error:
        raise UsageError(f"trial spec {number} of stdin is not one: {first_line(error)}") from None
    return spec


if __name__ == "__main__":
    cli.run(main)
