"""Past one machine: shards of a study, merged (`harness.merge`), give the unsharded study's summary."""

import concurrent.futures
import json

import pytest
from conftest import run_program

from harness.studies.records import read_records, schema_errors

STUDY = ["--conditions=control,kernels,init,all", "--repeats=3", "--epochs=1", "--max_train_examples=200"]
# Step times differ between any two runs; everything else must match.
TIMING = {"step_ms", "step_ms_median", "step_time_ratio_vs_control"}


def _comparable(summary):
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in summary["conditions"]]
    return rows, [line for line in summary["findings"] if "step time" not in line]


@pytest.mark.slow
def test_three_shards_and_a_merge_give_the_unsharded_summary(tmp_path):
    with concurrent.futures.ThreadPoolExecutor() as pool:
        # The shards run at once, as an indexed job's pods do, beside the whole study.
        shards = [pool.submit(run_program, "harness.bench", *STUDY, f"--shard_index={index}", "--num_shards=3",
                              f"--output_dir={tmp_path / 'sharded'}") for index in range(3)]
        whole = run_program("harness.bench", *STUDY, f"--output_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr
    for index, shard in enumerate(shards):
        assert shard.result().returncode == 0, shard.result().stderr
        assert f"shard {index} of 3" in shard.result().stdout
    shard_records = [read_records(tmp_path / "sharded" / f"shard-{i:05d}-of-00003" / "trials.jsonl")
                     for i in range(3)]
    assert [len(r) for r in shard_records] == [4, 4, 4]
    merged = run_program("harness.merge", f"--input_dir={tmp_path / 'sharded'}")
    assert merged.returncode == 0, merged.stderr
    assert "merged 12 trial record(s) from 3 shard(s)" in merged.stdout

    one = json.loads((tmp_path / "whole" / "summary.json").read_text())
    many = json.loads((tmp_path / "sharded" / "summary.json").read_text())
    assert schema_errors(many) == [] and many["study_id"] == one["study_id"]
    # Shard 0 measured the study's cost of determinism; the merge carries it into the study's summary.
    assert many["determinism_cost"]["blocks"] == one["determinism_cost"]["blocks"] == 48
    assert (tmp_path / "sharded" / "cost.json").exists()
    assert not (tmp_path / "sharded" / "shard-00001-of-00003" / "cost.json").exists()
    assert _comparable(many) == _comparable(one)
    # The whole study trains each condition's repeats as vectorized replicas (--replicas=auto), shards one by
    # one (auto, with shards): their configs and keys differ in `replicas`, their bits do not.
    def prints(path):
        return {(r["condition"], r["repeat"]): r["fingerprints"] for r in read_records(path / "trials.jsonl")}

    assert {r["config"]["replicas"] for r in read_records(tmp_path / "whole" / "trials.jsonl")} == {3}
    assert {r["config"]["replicas"] for r in read_records(tmp_path / "sharded" / "trials.jsonl")} == {1}
    assert prints(tmp_path / "sharded") == prints(tmp_path / "whole")


@pytest.mark.slow
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




@pytest.mark.slow
def test_a_merge_adds_to_the_records_already_there_and_never_drops_one(tmp_path):
    small = ["--repeats=2", "--epochs=1", "--max_train_examples=200", "--cost_blocks=0", f"--output_dir={tmp_path}"]
    # Repeats trained as vectorized replicas (--replicas=auto): the shards' control trials, one at a time, are the
    # same trials under other keys (replicas is in a key), and are not added again.
    assert run_program("harness.bench", "--conditions=control,kernels", *small).returncode == 0
    before = (tmp_path / "trials.jsonl").read_bytes()
    for index in range(2):
        shard = run_program("harness.bench", "--conditions=control,init", f"--shard_index={index}", "--num_shards=2",
                            *small)
        assert shard.returncode == 0, shard.stderr
    # A shard's per-example file gone: the merge stops before adding any record, naming the file.
    shard = tmp_path / "shard-00001-of-00002"
    init = next(r for r in read_records(shard / "trials.jsonl") if r["condition"] == "init")
    kept = shard / init["outputs"]["per_example"]["file"]
    kept.rename(tmp_path / "aside.npz")
    refused = run_program("harness.merge", f"--input_dir={tmp_path}")
    assert refused.returncode == 2 and refused.stderr.splitlines()[-1] == (
        f"error: {kept} is missing, and {shard / 'trials.jsonl'} trial {init['trial_key']} keeps its per-example "
        "predictions there: copy a study's per_example/ directory with its trials.jsonl.")
    assert (tmp_path / "trials.jsonl").read_bytes() == before
    (tmp_path / "aside.npz").rename(kept)
    merged = run_program("harness.merge", f"--input_dir={tmp_path}")
    assert merged.returncode == 0, merged.stderr
    assert "merged 4 trial record(s) from 2 shard(s) into" in merged.stdout
    assert "(2 added; 4 already there kept)" in merged.stdout
    after = (tmp_path / "trials.jsonl").read_bytes()
    assert after.startswith(before)  # every record that was there, byte for byte
    records = read_records(tmp_path / "trials.jsonl")
    assert sorted(r["condition"] for r in records) == ["control"] * 2 + ["init"] * 2 + ["kernels"] * 2
    assert len({r["trial_key"] for r in records}) == 6
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [row["name"] for row in summary["conditions"]] == ["control", "init"]
    # validate checks every record's per-example file: the merge copied the shards' into the study's.
    assert run_program("harness.validate", str(tmp_path / "trials.jsonl")).returncode == 0
    assert {r["outputs"]["per_example"]["file"] for r in records} <= {
        f"per_example/{path.name}" for path in (tmp_path / "per_example").iterdir()}
    # Merging again adds nothing and rewrites nothing.
    files = {name: (tmp_path / name).read_bytes() for name in ("trials.jsonl", "study.json", "summary.json")}
    again = run_program("harness.merge", f"--input_dir={tmp_path}")
    assert again.returncode == 0 and "(0 added; 6 already there kept; the study's files are unchanged)" in again.stdout
    assert {name: (tmp_path / name).read_bytes() for name in files} == files


@pytest.mark.slow
def test_a_merge_refuses_another_studys_directory_and_shards_from_other_environments(tmp_path):
    small = ["--conditions=control", "--repeats=2", "--epochs=1", "--max_train_examples=200", "--cost_blocks=0"]
    other = tmp_path / "other"
    assert run_program("harness.bench", *small, "--learning_rate=0.05", f"--output_dir={other}").returncode == 0
    before = (other / "trials.jsonl").read_bytes()
    sharded = tmp_path / "sharded"
    for index, env in enumerate(({}, {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"})):
        shard = run_program("harness.bench", *small, f"--shard_index={index}", "--num_shards=2",
                            f"--output_dir={sharded}", env_vars=env)
        assert shard.returncode == 0, shard.stderr
    mixed = run_program("harness.merge", f"--input_dir={sharded}")
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr
    assert mixed.stderr.splitlines()[-1] == (
        f"error: the trials to merge were recorded in different environments (TF_XLA_FLAGS --tf_xla_auto_jit=2 "
        f"--tf_xla_cpu_global_jit in {sharded}/shard-00001-of-00002, unset in {sharded}/shard-00000-of-00002); "
        "their bits do not compare, so they are not one study: run every shard where the others ran.")
    assert not (sharded / "trials.jsonl").exists()
    # The second shard again, where the first ran; then merged into a directory of another study.
    shard = run_program("harness.bench", *small, "--shard_index=1", "--num_shards=2",
                        f"--output_dir={tmp_path / 'redo'}")
    assert shard.returncode == 0, shard.stderr
    (sharded / "shard-00001-of-00002").rename(tmp_path / "xla-shard")
    (tmp_path / "redo" / "shard-00001-of-00002").rename(sharded / "shard-00001-of-00002")
    refused = run_program("harness.merge", f"--input_dir={sharded}", f"--output_dir={other}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    other_id = read_records(other / "trials.jsonl")[0]["study_id"]
    study_id = read_records(sharded / "shard-00000-of-00002" / "trials.jsonl")[0]["study_id"]
    assert refused.stderr.splitlines()[-1] == (
        f"error: {other}/trials.jsonl holds trials of study {other_id} and the shards ran study {study_id}; "
        "merging would mix two studies in one directory: give --output_dir another directory.")
    assert (other / "trials.jsonl").read_bytes() == before
