"""`python -m harness.merge --input_dir=DIR`: one study from the shards that ran it.

    python -m harness.merge --input_dir=results/digits_mlp

A sharded study (`--num_shards=N`, e.g. one pod of a Kubernetes Indexed Job per
shard) leaves DIR/shard-IIIII-of-NNNNN/ directories, each with its own
trials.jsonl and study.json. The merge checks they are shards of one study,
writes DIR/trials.jsonl, DIR/study.json and DIR/summary.json as one unsharded
run would have, and prints the study's table.
"""

from __future__ import annotations

from typing import Any

from absl import flags

import harness.flags  # noqa: F401 (defines --output_dir and --input_dir)
from harness import cli
from harness.analysis.summary import format_summary, summarize_study, write_summary
from harness.errors import UsageError
from harness.schema import COST_FILE, STUDY_FILE, STUDY_SCHEMA, SUMMARY_FILE, TRIALS_FILE
from harness.studies import determinism_cost
from harness.studies.records import (
    load_document,
    read_records,
    schema_errors,
    write_json,
    write_records,
)
from harness.studies.storage import StudyDir, exclusive

FLAGS = flags.FLAGS


def merge(shards: list[StudyDir], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest of the whole study, its records, one per trial) from its shard directories."""
    if not shards:
        raise UsageError(f"{where} has no shard-*-of-* directories to merge")
    manifests = [_manifest(shard) for shard in shards]
    first = manifests[0]
    for shard, manifest in zip(shards, manifests, strict=True):
        for key in ("study_id", "conditions", "repeats", "num_shards", "base_config", "base_seeds"):
            if manifest[key] != first[key]:
                raise UsageError(f"{shard} is not a shard of the same study as {shards[0]} ({key} differs)")
    missing = sorted(set(range(first["num_shards"])) - {m["shard_index"] for m in manifests})
    if missing:
        raise UsageError(f"{where} lacks shard(s) {', '.join(map(str, missing))} of {first['num_shards']}; "
                         "run them before merging")
    records: dict[str, dict[str, Any]] = {}
    for shard in shards:
        for record in read_records(shard.local / TRIALS_FILE):
            if record.get("study_id") == first["study_id"]:
                records.setdefault(record["trial_key"], record)
    manifest = {**first, "shard_index": 0, "num_shards": 1, "trials_in_shard": first["trials_planned"]}
    return manifest, list(records.values())


def _manifest(shard: StudyDir) -> dict[str, Any]:
    path = shard.local / STUDY_FILE
    try:
        manifest = load_document(path.read_bytes(), f"{shard}/{STUDY_FILE}")
    except FileNotFoundError:
        raise UsageError(f"{shard} has no {STUDY_FILE}; it was not written by harness.bench") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != STUDY_SCHEMA or schema_errors(manifest):
        raise UsageError(f"{shard}/{STUDY_FILE} is not a valid {STUDY_SCHEMA} record")
    return manifest


def main(argv: list[str]) -> int:
    del argv
    if not FLAGS.input_dir:
        raise UsageError("give --input_dir=DIR, the directory the shards wrote under")
    source = StudyDir(FLAGS.input_dir)
    shards = source.shards()
    shard_count = len(shards)
    manifest, records = merge(shards, FLAGS.input_dir)
    target = StudyDir(FLAGS.output_dir) if FLAGS.output_dir else source
    with exclusive(target.local):  # One run writes a study directory at a time.
        # Written whole, replacing any earlier merge: re-running a merge is safe.
        write_records(target.local / TRIALS_FILE, sorted(records, key=lambda r: (r["repeat"], r["trial_key"])))
        write_json(target.local / STUDY_FILE, manifest)
        environment = records[0]["environment"] if records else {}
        # The study's cost record, measured by shard 0, goes with the merged records.
        cost = next((found for found in map(determinism_cost.read, (shard.local for shard in shards))
                     if found and found["study_id"] == manifest["study_id"]), None)
        if cost:
            write_json(target.local / COST_FILE, cost)
        summary = summarize_study(manifest, records, environment, wall_s=None, cost=cost)
        write_summary(target.local / SUMMARY_FILE, summary)
        target.push()
    print(format_summary(summary))
    absent = manifest["trials_planned"] - len(records)
    print(f"\nmerged {len(records)} trial record(s) from {shard_count} shard(s) into {target}/"
          + (f"; {absent} planned trial(s) have no record yet" if absent else ""))
    return 0


if __name__ == "__main__":
    cli.run(main)
