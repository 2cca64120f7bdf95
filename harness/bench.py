"""`python -m harness.bench`: run a study and answer "why does my accuracy vary?".

    python -m harness.bench --benchmark=digits_mlp --conditions=control,kernels,init,all \\
        --repeats=10 --output_dir=results/digits_mlp

For each condition, N trials that vary exactly what the condition names
(`harness/conditions.py`). Every trial is appended to OUTPUT_DIR/trials.jsonl
as it finishes; OUTPUT_DIR/summary.json and a table follow. Re-running into the
same directory skips trials already recorded, so a killed study resumes.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from absl import flags

from harness import cli, conditions, determinism, environment, study, trial_flags
from harness.errors import UsageError
from harness.records import canonical_json
from harness.summary import SUMMARY_FILE, build_summary, format_summary, write_summary

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
    output_dir = Path(FLAGS.output_dir or f"results/{base.benchmark}")
    # The study is its base config and seeds: adding conditions or repeats later
    # extends the same study, and its records are reused.
    study_id = hashlib.sha256(canonical_json(
        {"config": base.replace(determinism=True).as_dict(), "base_seed": FLAGS.seed,
         "seeds": seeds.as_dict()}).encode()).hexdigest()[:12]
    started = time.perf_counter()
    specs = study.plan(base, FLAGS.seed, seeds, chosen, FLAGS.repeats, study_id)
    ran = study.execute(specs, output_dir, isolation=FLAGS.isolation, workers=FLAGS.workers)
    wall_s = time.perf_counter() - started
    summary = build_summary(
        study_id=study_id, base_config=base.as_dict(), base_seeds=seeds.as_dict(), conditions=chosen,
        repeats=FLAGS.repeats, records=study.study_records(specs, output_dir),
        environment=environment.capture(), wall_s=wall_s)
    write_summary(output_dir / SUMMARY_FILE, summary)
    print(format_summary(summary))
    print(f"\n{ran} trial(s) ran now in {wall_s:.0f}s, {len(specs) - ran} already recorded; "
          f"records in {output_dir}/ (trials.jsonl, summary.json, tb/)")
    return 0


if __name__ == "__main__":
    cli.run(main)
