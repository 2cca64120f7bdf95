"""Past one machine: shards of a study, merged, give the unsharded study's summary; gfile URLs work."""

import json

import tensorflow as tf
from conftest import run_program

from harness.studies import conditions, study_runner
from harness.studies.records import read_records, schema_errors
from harness.studies.storage import StudyDir
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet

STUDY = ["--conditions=control,kernels,init,all", "--repeats=3", "--epochs=1", "--max_train_examples=200"]
# Step times differ between any two runs; everything else must match.
TIMING = {"step_ms", "step_ms_median", "step_time_ratio_vs_control"}


def _comparable(summary):
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in summary["conditions"]]
    return rows, [line for line in summary["findings"] if "step time" not in line]


def test_three_shards_and_a_merge_give_the_unsharded_summary(tmp_path):
    whole = run_program("harness.bench", *STUDY, f"--output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    for index in range(3):
        shard = run_program("harness.bench", *STUDY, f"--shard_index={index}", "--num_shards=3",
                            f"--output_dir={tmp_path / 'sharded'}")
        assert shard.returncode == 0, shard.stderr
        assert f"shard {index} of 3" in shard.stdout
    shard_records = [read_records(tmp_path / "sharded" / f"shard-{i:05d}-of-00003" / "trials.jsonl")
                     for i in range(3)]
    assert [len(r) for r in shard_records] == [4, 4, 4]
    merged = run_program("harness.merge", f"--input_dir={tmp_path / 'sharded'}")
    assert merged.returncode == 0, merged.stderr
    assert "merged 12 trial record(s) from 3 shard(s)" in merged.stdout

    one = json.loads((tmp_path / "whole" / "summary.json").read_text())
    many = json.loads((tmp_path / "sharded" / "summary.json").read_text())
    assert schema_errors(many) == [] and many["study_id"] == one["study_id"]
    assert _comparable(many) == _comparable(one)
    whole_prints = {r["trial_key"]: r["fingerprints"] for r in read_records(tmp_path / "whole" / "trials.jsonl")}
    merged_prints = {r["trial_key"]: r["fingerprints"] for r in read_records(tmp_path / "sharded" / "trials.jsonl")}
    assert merged_prints == whole_prints


def test_a_kubernetes_indexed_job_picks_its_shard_from_the_environment(tmp_path):
    result = run_program("harness.bench", *STUDY, f"--output_dir={tmp_path}",
                         env_vars={"JOB_COMPLETION_INDEX": "2", "HARNESS_NUM_SHARDS": "3"})
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "shard-00002-of-00003" / "study.json").read_text())
    assert (manifest["shard_index"], manifest["num_shards"], manifest["trials_in_shard"]) == (2, 3, 4)
    assert schema_errors(manifest) == []
    # A shard missing from the merge is one clear sentence.
    missing = run_program("harness.merge", f"--input_dir={tmp_path}")
    assert missing.returncode == 2 and "lacks shard(s) 0, 1 of 3" in missing.stderr
    bad = run_program("harness.bench", *STUDY, "--shard_index=3", "--num_shards=3", f"--output_dir={tmp_path}")
    assert bad.returncode == 2 and "shard index 3 is not one of 3 shard(s)" in bad.stderr


def test_a_study_in_a_gfile_url_publishes_whole_files_and_resumes(tmp_path):
    # A file:// URL takes the same tf.io.gfile path as gs:// (TF's ram:// filesystem would not do:
    # its writes append to an existing file instead of replacing it, unlike object stores).
    url = f"file://{tmp_path}/remote"
    base, seeds = load_benchmark("digits_mlp", epochs=1, max_train_examples=200), SeedSet.from_base(0)
    specs = study_runner.plan(base, 0, seeds, conditions.parse_conditions("control,init"), 2, "remote")
    remote = StudyDir(url)
    assert remote.remote and remote.local != tmp_path / "remote"
    study_runner.execute(specs[:2], remote.local, after_each=remote.push)
    with tf.io.gfile.GFile(f"{url}/trials.jsonl") as handle:
        assert [json.loads(line)["trial_key"] for line in handle] == [s.key for s in specs[:2]]
    # A new process (here: a new StudyDir) pulls what the remote holds and runs only the rest.
    again = StudyDir(url)
    assert again.local != remote.local
    assert study_runner.execute(specs, again.local, after_each=again.push) == 2
    assert [r["trial_key"] for r in read_records(tmp_path / "remote" / "trials.jsonl")] == [s.key for s in specs]


def test_shards_never_split_a_replica_group():
    base, seeds = load_benchmark("digits_mlp", epochs=1, max_train_examples=200), SeedSet.from_base(0)
    specs = study_runner.plan(base, 0, seeds, conditions.parse_conditions("control,init,all"), 6, "s", replicas=3)
    shards = [study_runner.shard(specs, i, 2) for i in range(2)]
    assert sorted(s.key for part in shards for s in part) == sorted(s.key for s in specs)
    for part in shards:
        groups = {}
        for spec in part:
            if spec.group is not None:
                groups.setdefault((spec.condition, spec.group), []).append(spec)
        # Every group in a shard has all its members, as many as its config says it trains together.
        assert all(len(members) == members[0].config.replicas for members in groups.values())
