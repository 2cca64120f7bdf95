"""Past one machine: shards of a study, merged (`harness.merge`), give the unsharded study's summary."""

import concurrent.futures
import json

from conftest import run_program

from harness.studies.records import read_records, schema_errors

STUDY = ["--conditions=control,kernels,init,all", "--repeats=3", "--epochs=1", "--max_train_examples=200"]
# Step times differ between any two runs; everything else must match.
TIMING = {"step_ms", "step_ms_median", "step_time_ratio_vs_control"}


def _comparable(summary):
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in summary["conditions"]]
    return rows, [line for line in summary["findings"] if "step time" not in line]


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


