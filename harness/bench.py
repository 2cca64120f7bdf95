"""`python -m harness.bench`: run a benchmark's trials and write records.

    python -m harness.bench --benchmark=digits_mlp --repeats=3 --output_dir=results/digits_mlp

Every trial is appended to OUTPUT_DIR/trials.jsonl as it finishes; a re-run
into the same directory skips trials whose records are already there. Repeats of
one configuration share their seeds, so with op determinism on (condition
`control`) they must agree bit for bit; with it off (condition `kernels`) they
differ only where kernels are nondeterministic (on GPUs).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from absl import flags, logging

from harness import cli, environment, trial_flags
from harness.records import (
    TRIALS_FILE,
    append_record,
    canonical_json,
    make_trial_record,
    read_records,
    trial_key,
)
from harness.table import format_table
from harness.train import run_trial

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 3, "Trials of the configuration.", lower_bound=1)
flags.DEFINE_string("output_dir", None, "Where records go (default: results/BENCHMARK).")


def main(argv: list[str]) -> int:
    del argv
    config = trial_flags.config_from_flags()
    seeds = trial_flags.seeds_from_flags()
    output_dir = Path(FLAGS.output_dir or f"results/{config.benchmark}")
    condition = "control" if config.determinism else "kernels"
    study_id = hashlib.sha256(canonical_json(
        {"config": config.as_dict(), "seeds": seeds.as_dict(), "repeats": FLAGS.repeats}).encode()
    ).hexdigest()[:12]
    trials_path = output_dir / TRIALS_FILE
    existing = {record.get("trial_key"): record for record in read_records(trials_path)}
    rows, ran = [], 0
    started = time.perf_counter()
    for repeat in range(FLAGS.repeats):
        record = existing.get(trial_key(config, seeds, condition, repeat))
        if record is None:
            result = run_trial(config, seeds)
            record = make_trial_record(config=config, seeds=seeds, condition=condition, repeat=repeat,
                                       study_id=study_id, result=result, environment=environment.capture())
            append_record(trials_path, record)
            ran += 1
            elapsed = time.perf_counter() - started
            logging.info("trial %d/%d (%s) %s in %.1fs; ETA %.0fs", repeat + 1, FLAGS.repeats, condition,
                         result.status["code"], result.timing["wall_s"],
                         elapsed / ran * (FLAGS.repeats - repeat - 1))
        rows.append(_row(record))
    print(f"{config.benchmark}: {config.dataset}, {config.model}, {config.epochs} epochs, "
          f"batch {config.batch_size}, determinism {'on' if config.determinism else 'off'}")
    print(format_table(
        ["repeat", "status", "test_acc", "test_loss", "weights_sha256", "step_ms", "examples/s"], rows))
    hashes = {row[4] for row in rows if row[1] == "ok"}
    print(f"{len(hashes)} unique weight hash(es) over {len(rows)} trial(s); {ran} ran now, "
          f"{len(rows) - ran} already recorded; records in {trials_path}")
    return 0


def _row(record: dict) -> list:
    metrics, timing = record["metrics"], record["timing"]
    step_ms = (timing.get("steady_step_ms") or {}).get("median")
    weights = record["fingerprints"].get("weights_sha256", "")
    return [record["repeat"], record["status"]["code"], metrics.get("test_accuracy"),
            metrics.get("test_loss"), weights[:16], step_ms, timing.get("examples_per_s")]


if __name__ == "__main__":
    cli.run(main)
