"""`python -m harness.bench`: run a study and answer "why does my accuracy vary?".

    python -m harness.bench --benchmark=digits_mlp --conditions=control,kernels,init,all \\
        --repeats=10 --output_dir=results/digits_mlp

For each condition, N trials that vary exactly what the condition names
(`harness/conditions.py`). Every trial is appended to OUTPUT_DIR/trials.jsonl
as it finishes; OUTPUT_DIR/summary.json and a table follow. Re-running into the
same directory skips trials already recorded, so a killed study resumes.
"""

from __future__ import annotations

import os
import time

from absl import flags

from harness import cli, conditions, determinism, environment, scan, study, trial_flags
from harness.errors import UsageError
from harness.records import STUDY_FILE, STUDY_SCHEMA, content_id, write_json
from harness.storage import StudyDir, shard_dir_name
from harness.summary import SUMMARY_FILE, format_summary, summarize_study, write_summary

FLAGS = flags.FLAGS
flags.DEFINE_string("conditions", ",".join(conditions.DEFAULT_CONDITIONS),
                    "Comma-separated conditions: control, kernels, init, shuffle, dropout, augment, split, "
                    "all, bit, env:threads=N, env:onednn=0|1, env:xla=0|1.")
flags.DEFINE_integer("repeats", 10, "Trials per condition.", lower_bound=1)
flags.DEFINE_string("output_dir", None, "Where records go (default: results/BENCHMARK).")
flags.DEFINE_enum("isolation", "inprocess", list(study.ISOLATIONS),
                  "inprocess: trials share this process (results match fresh processes); "
                  "process: a fresh process per trial.")
flags.DEFINE_integer("workers", 1, "Worker processes running trials in parallel.", lower_bound=1)
flags.DEFINE_string("replicas", "1", "Train each condition's repeats K at a time as vectorized replicas in one "
                    "graph (a number, or auto for up to 16); 1 runs trials one by one. Conditions that cannot be "
                    "vectorized (environment variants, XLA, models other than the MLPs) run one by one.")
flags.DEFINE_integer("shard_index", None, "Run only this shard of the study (default: $JOB_COMPLETION_INDEX, "
                     "as a Kubernetes Indexed Job sets it, else 0).")
flags.DEFINE_integer("num_shards", None, "Shards the study is split into (default: $HARNESS_NUM_SHARDS, else 1).")


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
    if FLAGS["determinism"].present:
        raise UsageError("bench sets op determinism per condition; use --conditions=control (on) "
                         "or --conditions=kernels (off) instead of --determinism")
    base = trial_flags.config_from_flags()
    seeds = trial_flags.seeds_from_flags()
    # Before any op runs: trials with these thread pools can then share this process.
    determinism.set_thread_pools(base.intra_op_threads, base.inter_op_threads)
    chosen = conditions.parse_conditions(FLAGS.conditions)
    shard_index, num_shards = shard_from_flags()
    scan.warn_at_study_start(base)
    location = (FLAGS.output_dir or f"results/{base.benchmark}").rstrip("/")
    if num_shards > 1:
        # Every shard writes its own records; `harness.merge` builds the study's summary.
        location = f"{location}/{shard_dir_name(shard_index, num_shards)}"
    study_dir = StudyDir(location)
    # The study is its base config and seeds: adding conditions or repeats later
    # extends the same study, and its records are reused.
    study_id = content_id({"config": base.replace(determinism=True).as_dict(), "base_seed": FLAGS.seed,
                           "seeds": seeds.as_dict()})
    started = time.perf_counter()
    planned = study.plan(base, FLAGS.seed, seeds, chosen, FLAGS.repeats, study_id,
                         study.parse_replicas(FLAGS.replicas))
    specs = study.shard(planned, shard_index, num_shards)
    manifest = {"schema": STUDY_SCHEMA, "study_id": study_id, "benchmark": base.benchmark,
                "base_config": base.as_dict(), "base_seed": FLAGS.seed, "base_seeds": seeds.as_dict(),
                "conditions": [c.name for c in chosen], "repeats": FLAGS.repeats, "shard_index": shard_index,
                "num_shards": num_shards, "trials_planned": len(planned), "trials_in_shard": len(specs)}
    write_json(study_dir.local / STUDY_FILE, manifest)
    ran = study.execute(specs, study_dir.local, isolation=FLAGS.isolation, workers=FLAGS.workers,
                        after_each=study_dir.push)
    wall_s = time.perf_counter() - started
    summary = summarize_study(manifest, study.study_records(specs, study_dir.local), environment.capture(), wall_s)
    write_summary(study_dir.local / SUMMARY_FILE, summary)
    study_dir.push(with_curves=True)
    print(format_summary(summary))
    shard_note = f" (shard {shard_index} of {num_shards}: merge with harness.merge)" if num_shards > 1 else ""
    print(f"\n{ran} trial(s) ran now in {wall_s:.0f}s, {len(specs) - ran} already recorded; "
          f"records in {study_dir}/ (trials.jsonl, summary.json, tb/){shard_note}")
    return 0


if __name__ == "__main__":
    cli.run(main)
