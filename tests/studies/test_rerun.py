"""harness.rerun: a recorded trial trained again alone, in a fresh process, its fingerprints set beside the record's."""

import json
import shutil

import pytest
from conftest import SMALL, run_program

import harness
from harness.studies import conditions, study_runner
from harness.studies.records import read_records
from harness.studies.rerun import find_record
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two vectorized replicas of `init`, and two trials of oneDNN off, each in a process of its own."""
    directory = tmp_path_factory.mktemp("rerun") / "study"
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    specs = study_runner.plan(base, 0, seeds, conditions.parse_conditions("init,env:onednn=0"), 2, "s", replicas=2)
    study_runner.execute(specs, directory)
    return {r["condition"]: r for r in read_records(directory / "trials.jsonl") if r["repeat"] == 1}, directory


@pytest.mark.slow
def test_a_vectorized_replica_reruns_alone_bit_for_bit(study):
    records, directory = study
    replica = records["init"]
    assert replica["outputs"]["vectorized"] == {"replicas": 2, "index": 1, "path": "fused"}
    result = run_program("harness.rerun", f"--input_dir={directory}", f"--trial_key={replica['trial_key'][:8]}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"trial {replica['trial_key']} (init, repeat 1), trained as replica 2 of 2 (fused path)" in result.stdout
    assert result.stdout.count(" yes") == 4
    assert result.stdout.rstrip().endswith("reproduced bit for bit: every fingerprint is the record's.")


@pytest.mark.slow
def test_a_rerun_gets_its_conditions_environment(study):
    """A trial of oneDNN off reruns with TF_ENABLE_ONEDNN_OPTS=0, as its condition ran it (from Python here)."""
    records, directory = study
    result = harness.rerun(directory, records["env:onednn=0"]["trial_key"])
    assert result["same"] and result["rerun"]["environment"]["onednn_enabled"] is False


@pytest.mark.slow
def test_a_fingerprint_that_does_not_reproduce_is_a_finding(study, tmp_path):
    records, directory = study
    shutil.copytree(directory, tmp_path / "copy")
    lines = (tmp_path / "copy" / "trials.jsonl").read_text().splitlines()
    key = records["init"]["trial_key"]
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record["trial_key"] == key:
            record["fingerprints"]["weights_sha256"] = "0" * 64
            lines[i] = json.dumps(record)
    (tmp_path / "copy" / "trials.jsonl").write_text("\n".join(lines) + "\n")
    result = run_program("harness.rerun", f"--input_dir={tmp_path / 'copy'}", f"--trial_key={key}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "weights_sha256          0000000000000000  " in result.stdout
    assert result.stdout.rstrip().endswith("NOT reproduced: weights_sha256 differ.")


def test_a_trial_key_must_name_one_recorded_trial(study, tmp_path):
    _, directory = study
    from harness.errors import UsageError

    cases = [(tmp_path, "abcdef", f"{tmp_path}/trials.jsonl does not exist; name a study directory with --input_dir"),
             (directory, "ab", "--trial_key needs at least 6 characters of a trial key, got 'ab'"),
             (directory, "zzzzzz", f"no trial in {directory}/trials.jsonl has a key starting with 'zzzzzz'")]
    for where, key, sentence in cases:
        with pytest.raises(UsageError) as error:
            find_record(where, key)
        assert str(error.value) == sentence
