"""`python -m harness.merge --input_dir=DIR`: one study from the shards that ran it.

    python -m harness.merge --input_dir=results/digits_mlp

A sharded study (`--num_shards=N`, e.g. one pod of a Kubernetes Indexed Job per
shard) leaves DIR/shard-IIIII-of-NNNNN/ directories, each with its own
trials.jsonl and study.json. The merge checks they are shards of one study,
adds their records to DIR/trials.jsonl (and copies the per-example files they
name into DIR/per_example/, each checked against its hash), writes DIR/study.json and
DIR/summary.json as one unsharded run would have, and prints the study's table.

A merge never removes a record: records already in DIR/trials.jsonl (an earlier
unsharded run of the same study with other conditions, an earlier merge) stay
as they are, and a trial already there is not added again, so merging twice
changes nothing. Records of another study, or trials recorded in another
environment than the shards', are refused in a sentence: they would be mixed
into one study's verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from absl import flags

import harness.flags  # noqa: F401 (defines --output_dir and --input_dir)
from harness import cli
from harness.analysis.summary import format_summary, load_summary, summarize_study, write_summary
from harness.errors import UsageError
from harness.platform import environment
from harness.schema import COST_FILE, STUDY_FILE, STUDY_SCHEMA, SUMMARY_FILE, TRIALS_FILE
from harness.studies import determinism_cost, per_example
from harness.studies.records import (
    append_record,
    load_document,
    read_records,
    schema_errors,
    trial_identity,
    write_json,
)
from harness.studies.storage import StudyDir, exclusive

FLAGS = flags.FLAGS
# The shared flags merge reads, which its --help lists.
for _name in ("input_dir", "output_dir"):
    flags.declare_key_flag(_name)


def merge(shards: list[StudyDir], where: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Path]]:
    """(manifest of the whole study, its records, one per trial, and the shard directory each record's
    trial_key came from: its per-example file is there) from its shard directories."""
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
    sources: dict[str, Path] = {}
    places = []
    for shard in shards:
        mine = [r for r in read_records(shard.local / TRIALS_FILE) if r.get("study_id") == first["study_id"]]
        places.append((str(shard), mine))
        for record in mine:
            records.setdefault(record["trial_key"], record)
            sources.setdefault(record["trial_key"], shard.local)
    refuse_mixed_environments(places)
    manifest = {**first, "shard_index": 0, "num_shards": 1, "trials_in_shard": first["trials_planned"]}
    return manifest, list(records.values()), sources


def refuse_mixed_environments(places: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Shards that ran where the bits come out otherwise (another CPU, TF, XLA flag, thread pool: every
    environment.BIT_SETTINGS entry) do not make one study: a condition would look irreproducible because
    its repeats ran on two kinds of machine. One sentence naming the setting, both values and both places."""
    from harness.studies import unit_of_work  # TensorFlow: not at import, which --help does

    reference_place, reference_record = next(((place, record) for place, records in places for record in records),
                                             (None, None))
    if reference_record is None:
        return
    reference = environment.bit_identity(reference_record.get("environment") or {})
    for place, records in places:
        for record in records:
            changes = unit_of_work.environment_changes(record, reference)
            if changes:
                what = "; ".join(f"{name} {then} in {place}, {there} in {reference_place}"
                                 for name, then, there in changes)
                raise UsageError(f"the trials to merge were recorded in different environments ({what}); their "
                                 "bits do not compare, so they are not one study: run every shard where the others "
                                 "ran")


def refuse_another_study(existing: list[dict[str, Any]], study_id: str, target: StudyDir) -> None:
    """A directory holds one study's records: merging another study's shards into it would mix two."""
    others = sorted({str(r.get("study_id")) for r in existing} - {study_id})
    if others:
        raise UsageError(f"{target}/{TRIALS_FILE} holds trials of study {others[0]} and the shards ran study "
                         f"{study_id}; merging would mix two studies in one directory: give --output_dir another "
                         "directory")


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
    manifest, records, sources = merge(shards, FLAGS.input_dir)
    target = StudyDir(FLAGS.output_dir) if FLAGS.output_dir else source
    with exclusive(target.local):  # One run writes a study directory at a time; read and write under it.
        existing = read_records(target.local / TRIALS_FILE)
        refuse_another_study(existing, manifest["study_id"], target)
        refuse_mixed_environments([(f"{target}/{TRIALS_FILE}", existing),
                                   *(((str(shards[0]), records[:1]),) if records else ())])
        # Added to what is there, never replacing it: records are appended one whole line at a time. A trial
        # already there is not added again, whether under its key or run another way under another key (one
        # study's records: the same key is the same trial identity): it would count twice.
        kept = {trial_identity(r): r for r in reversed(existing)}  # the first, should one be there twice
        identified = [(trial_identity(r), r) for r in records]
        study = [kept.get(identity, r) for identity, r in identified]
        added = sorted((r for identity, r in identified if identity not in kept),
                       key=lambda r: (r["repeat"], r["trial_key"]))
        # Every added record's per-example file first, each checked against its hash: a record is appended only
        # where its file already is, and a shard's missing or damaged file stops the merge before any record.
        for record in added:
            per_example.copy(record, sources[record["trial_key"]], target.local)
        for record in added:
            append_record(target.local / TRIALS_FILE, record)
        summary = _unchanged_summary(target, manifest) if not added else None
        unchanged = summary is not None  # merged before: nothing to add, and no file is rewritten
        if not unchanged:
            summary = _write_study(target, manifest, study, shards)
    print(format_summary(summary))
    absent = manifest["trials_planned"] - len(records)
    print(f"\nmerged {len(records)} trial record(s) from {shard_count} shard(s) into {target}/"
          f" ({len(added)} added; {len(existing)} already there kept"
          + ("; the study's files are unchanged)" if unchanged else ")")
          + (f"; {absent} planned trial(s) have no record yet" if absent else ""))
    return 0


def _unchanged_summary(target: StudyDir, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The directory's summary when it already is this merge's (the same study.json, a valid summary.json), so
    that merging again changes no file; None when the study's files must be written."""
    try:
        previous = load_document((target.local / STUDY_FILE).read_bytes(), STUDY_FILE)
        summary = load_summary(target.local / SUMMARY_FILE)
    except (OSError, UsageError):
        return None
    return summary if previous == manifest else None


def _write_study(target: StudyDir, manifest: dict[str, Any], study: list[dict[str, Any]],
                 shards: list[StudyDir]) -> dict[str, Any]:
    """Writes the merged study's study.json, cost.json (shard 0's) and summary.json; returns the summary."""
    write_json(target.local / STUDY_FILE, manifest)
    # The study's cost record, measured by shard 0, goes with the merged records.
    cost = next((found for found in map(determinism_cost.read, (shard.local for shard in shards))
                 if found and found["study_id"] == manifest["study_id"]), None)
    if cost:
        write_json(target.local / COST_FILE, cost)
    summary = summarize_study(manifest, study, study[0]["environment"] if study else {}, wall_s=None,
                              directory=target.local, cost=cost)
    write_summary(target.local / SUMMARY_FILE, summary)
    target.push()
    return summary


if __name__ == "__main__":
    cli.run(main, writes_records=True)
