"""`python -m harness.worker --output_dir=DIR`: runs the trial specs given as a JSON list on stdin.

Started by `harness.studies.study_runner` for trials that need a fresh process or another
process environment; trials of one replica group train together here, as in the parent (the list
holds every member of a group, and members already recorded are trained but not written again).
Prints one JSON line per finished trial for the parent's progress, and one as each trial (or replica
group) starts, for the parent's time limit (--trial_timeout); records go straight to DIR/trials.jsonl.
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
from harness.platform import determinism, environment, processes
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
flags.DEFINE_boolean("probe", False, "Instead of trials: load the data of the trial config on stdin (a JSON object) "
                     "and probe its model (the facts planners ask, trial/train.py), printing each step and the facts "
                     "as JSON lines; writes nothing. Where your code can crash or hang a process but not the study's "
                     "(study_runner.probe_apart).")
flags.DEFINE_boolean("resume_from", False, "Instead of trials: finish the `resume` condition's one trial on stdin from "
                     "the checkpoint in --output_dir, in this fresh process (harness/trial/resume.py), and write its "
                     "result and restart-replay verdict there; writes no record.")


def main(argv: list[str]) -> int:
    del argv
    from harness.studies.study_runner import outcome, recorded_keys, run_in_this_process

    if flags.FLAGS.parent_pid is not None:
        processes.die_with_parent(flags.FLAGS.parent_pid)
    if flags.FLAGS.probe:
        return probe(sys.stdin.buffer.read())
    specs = specs_from(sys.stdin.buffer.read())
    if flags.FLAGS.resume_from:
        return resume_from(specs, Path(flags.FLAGS.output_dir))
    if specs:
        # Thread pools are fixed once per process, before the first op runs.
        determinism.set_thread_pools(specs[0].config.intra_op_threads, specs[0].config.inter_op_threads)
    output_dir = Path(flags.FLAGS.output_dir)
    recorded = recorded_keys(specs, read_records(output_dir / TRIALS_FILE))

    def finished(records: list[dict]) -> None:
        # One line per trial or replica group, for the parent's progress.
        print(json.dumps({"trials": [outcome(record) for record in records]}), flush=True)

    here = environment.capture()

    def starting(members: list[TrialSpec]) -> None:
        # Before each trial or replica group: the parent times it (--trial_timeout), and records it as failed
        # in this environment should it end this process at the limit.
        print(json.dumps({"started": [spec.key for spec in members], "environment": here}), flush=True)

    run_in_this_process([s for s in specs if s.key not in recorded], specs, output_dir, recorded, finished, starting)
    return 0


def probe(stdin: bytes) -> int:
    """--probe: says what it is about to do with the user's code (the parent names it should this process crash
    or hang there), then the model's facts."""
    from harness.trial import train, user_code
    from harness.trial.config import TrialConfig
    from harness.trial.datasets import dataset_of

    document = load_document(stdin, "stdin")
    try:
        config = TrialConfig(**document)
    except TypeError as error:
        raise UsageError(f"stdin must hold a trial config (a JSON object), as the study that starts a probe writes it "
                         f"({first_line(error)})") from None
    print(json.dumps({"doing": user_code.DOING["data"]}), flush=True)
    dataset_of(config)
    if config.is_user_model:
        print(json.dumps({"doing": user_code.DOING["model"]}), flush=True)
        print(json.dumps({"facts": train.model_facts(config)._asdict()}), flush=True)
    return 0


def resume_from(specs: list[TrialSpec], directory: Path) -> int:
    """--resume_from: the resumed run of the trial (trial/resume.finish), judged against the uninterrupted run's
    trace its own process wrote (analysis/restart_replay.verdict)."""
    from harness.analysis import restart_replay
    from harness.trial import resume

    if len(specs) != 1 or not specs[0].config.resume_epoch:
        raise UsageError("--resume_from finishes one trial of the `resume` condition; stdin must hold exactly that")
    config, seeds = specs[0].config, specs[0].seeds
    determinism.set_thread_pools(config.intra_op_threads, config.inter_op_threads)
    result = resume.finish(config, seeds, directory)
    if result.status["code"] == "ok":
        said = result.outputs["resume"]
        said.update(restart_replay.verdict(resume.read_reference(directory), result.trace, said["step"],
                                           said["epoch"], result.model.get("seed_generators", [])))
    resume.write_result(directory, result)
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
    cli.run(main, writes_records=True)
