"""`python -m harness.bench`: run a study and answer "why does my accuracy vary?".

    python -m harness.bench --benchmark=digits_mlp --conditions=control,kernels,init,all \\
        --repeats=10 --output_dir=results/digits_mlp
    python -m harness.bench --model=my_model.py:create_model --data=npz:my_data.npz --epochs=20

For each condition, N trials that vary exactly what the condition names
(`harness/studies/conditions.py`). Every trial is appended to OUTPUT_DIR/trials.jsonl
as it finishes; OUTPUT_DIR/summary.json and a table follow. Re-running into the
same directory skips trials already recorded, so a killed study resumes.
"""

from __future__ import annotations

import os

from absl import flags

from harness import cli, trial_flags
from harness.analysis import op_scan
from harness.errors import UsageError
from harness.flags import RAY_FLAGS, executor_from_flags, value_or
from harness.platform import processes
from harness.schema import LOST_FILE, PER_EXAMPLE_DIR, SUMMARY_FILE, TRIALS_FILE
from harness.studies import DEFAULT_TRIAL_TIMEOUT_S, MAX_TRIAL_TIMEOUT_S, MAX_WORKERS, conditions
from harness.table import terminal_width
from harness.trial.config import DEFAULT_COST_BLOCKS

# TensorFlow and the study machinery are imported in main(): --help lists the flags without waiting for them.
FLAGS = flags.FLAGS
# The shared flags bench reads, which its --help lists (--determinism it refuses: each condition sets it).
for _name in (*trial_flags.CONFIG_FLAGS, *trial_flags.SEED_FLAGS, "conditions", "repeats", "replicas", "isolation",
              *RAY_FLAGS, "output_dir"):
    if _name != "determinism":
        flags.declare_key_flag(_name)
flags.DEFINE_integer("workers", 1, "Worker processes running trials in parallel (a replica group whole in one).",
                     lower_bound=1, upper_bound=MAX_WORKERS)
flags.DEFINE_integer("trial_timeout", None, "Seconds a trial (a replica group whole) may train before it is "
                     "stopped and recorded as failed, and the study goes on; given, every trial runs in a worker "
                     "process, which is what can be stopped (0: no limit). Default: none for your own model or data; "
                     f"{DEFAULT_TRIAL_TIMEOUT_S} for the built-in models on built-in data where trials run in worker "
                     "processes (docs/failures.md).", lower_bound=0, upper_bound=MAX_TRIAL_TIMEOUT_S)
flags.DEFINE_integer("shard_index", None, "Run only this shard of the study (default: $JOB_COMPLETION_INDEX, "
                     "as a Kubernetes Indexed Job sets it, else 0).")
flags.DEFINE_integer("num_shards", None, "Shards the study is split into (default: $HARNESS_NUM_SHARDS, else 1).")
flags.DEFINE_integer("cost_blocks", DEFAULT_COST_BLOCKS, "Blocks per setting in each of the 3 units (each a freshly "
                     "built model) of the interleaved measurement of determinism's cost (op determinism off/on, "
                     "tf.data's deterministic off/on, XLA with env:xla=1) in a study with control and kernels: at "
                     "least 8; 0 measures nothing (docs/speed.md).")
flags.DEFINE_enum("scan_ops", "auto", ["auto", "on", "off"], "Warn at the start of the study, in one line, of train "
                  "step ops with known GPU determinism issues: auto where a GPU is visible (on a CPU they are "
                  "deterministic), on always, off never.")


def shard_from_flags() -> tuple[int, int]:
    """(shard index, shard count): flags first, then a Kubernetes Indexed Job's environment."""
    def number(flag: str, variable: str, default: int) -> int:
        if FLAGS[flag].value is not None:
            return FLAGS[flag].value
        text = os.environ.get(variable)
        if text is None:
            return default
        if not text.isdigit():
            raise UsageError(f"${variable} must be a whole number, got {text!r}")
        return int(text)

    index = number("shard_index", "JOB_COMPLETION_INDEX", 0)
    count = number("num_shards", "HARNESS_NUM_SHARDS", 1)
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"shard index {index} is not one of {count} shard(s) (0 to {count - 1})")
    return index, count


def main(argv: list[str]) -> int:
    del argv
    from harness import api
    from harness.analysis.summary import format_summary
    from harness.studies import study_runner

    if FLAGS["determinism"].present:
        raise UsageError("bench sets op determinism per condition; use --conditions=control (on) "
                         "or --conditions=kernels (off) instead of --determinism")
    base = trial_flags.config_from_flags()
    seeds = trial_flags.seeds_from_flags()
    output_dir = value_or("output_dir", f"results/{base.benchmark}")
    # Before anything here calls the user's code (the default conditions ask what the model's layers draw).
    study_runner.probe_apart(base, output_dir, FLAGS.isolation, FLAGS.workers,
                             study_runner.time_limit_of(base, FLAGS.trial_timeout))
    chosen = (conditions.parse_conditions(FLAGS.conditions) if FLAGS.conditions is not None
              else conditions.default_conditions(base))
    shard_index, num_shards = shard_from_flags()
    op_scan.warn_at_study_start(base, FLAGS.scan_ops)
    run = api.run_study(base, FLAGS.seed, seeds, chosen, value_or("repeats", 10), output_dir,
                        replicas=study_runner.parse_replicas(value_or("replicas", "auto")), isolation=FLAGS.isolation,
                        workers=FLAGS.workers, shard_index=shard_index, num_shards=num_shards,
                        cost_blocks=FLAGS.cost_blocks, executor=executor_from_flags(),
                        trial_timeout=FLAGS.trial_timeout)
    print(format_summary(run.summary, width=terminal_width()))
    if run.alone:
        print("\nTrained one at a time, not in replica groups: "
              + "; ".join(f"{name}, as {reason}" for name, reason in run.alone.items()) + ".")
    shard_note = f" (shard {shard_index} of {num_shards}: merge with harness.merge)" if num_shards > 1 else ""
    # "In all" counts Python's start, TensorFlow's import and the summary: a resume that trains nothing still
    # takes those, and a time that left them out would be the wrong answer to "how long did this take".
    in_all = processes.seconds_since_start()
    took = f"{in_all:.0f}s in all (the study itself: {run.wall_s:.0f}s)" if in_all else f"{run.wall_s:.0f}s"
    written = ", ".join(name for name in (TRIALS_FILE, f"{PER_EXAMPLE_DIR}/", SUMMARY_FILE, "tb/")
                        if (run.directory.local / name).exists())
    lost_now = f", {len(run.lost)} lost" if run.lost else ""
    print(f"\n{run.ran} trial(s) ran now, {run.already_recorded} already recorded{lost_now}; {took}; "
          f"records in {run.directory}/ ({written}){shard_note}")
    if run.lost:
        # Not a result and not bad input: the study is incomplete, and the same command completes it.
        print(f"{len(run.lost)} trial(s) were lost, not run to the end ({run.lost[-1]}); the summary leaves them "
              f"out. Run the same command again to retry them (see {run.directory}/{LOST_FILE}).")
    failed_all = all_failed(run.summary)
    if failed_all:
        print(failed_all)
    return 1 if run.lost or failed_all else 0


def all_failed(summary: dict) -> str | None:
    """The sentence for a study with trials recorded and none of them ok (a model that cannot train, code that
    fails every time): no result, so not a finished study (exit 1). None when a trial succeeded."""
    rows = summary["conditions"]
    failed = sum(row["n_failed"] for row in rows)
    if not failed or any(row["n_ok"] for row in rows):
        return None
    # The first condition's first failure, in its own words (each row keeps one message per failure code).
    why = next((f"; {code}: {reason.rstrip('.')}" if reason else f"; {code}" for row in rows
                for code, reason in row.get("failure_reasons", {}).items()), "")
    return (f"Every trial failed ({failed} of {failed}{why}): the study has no result to compare. Fix the cause "
            "and run the study again in a new --output_dir.")


if __name__ == "__main__":
    cli.run(main, writes_records=True)
