"""Records: schema-valid, written whole, never lost or torn by a kill."""

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO, kill_after_lines, run_conditions, user_config

from harness.errors import UsageError
from harness.platform import environment
from harness.studies.records import (
    append_record,
    make_trial_record,
    read_records,
    schema_errors,
    trial_key,
    write_json,
    write_records,
)
from harness.trial.seeds import SeedSet
from harness.trial.train import inputs_identity, run_trial


@pytest.fixture(scope="module")
def record():
    from harness.trial.config import load_benchmark

    config = load_benchmark("digits_mlp", epochs=2, max_train_examples=300, flip_bit=3)
    seeds = SeedSet.from_base(0)
    return make_trial_record(config=config, seeds=seeds, condition="control", repeat=0, study_id="s",
                             result=run_trial(config, seeds), environment=environment.capture(),
                             inputs=inputs_identity(config))


def test_a_real_record_is_schema_valid_and_complete(record):
    assert schema_errors(record) == []
    assert record["schema"] == "harness.trial/1"
    env = record["environment"]
    assert env["tensorflow"]["version"] and env["tensorflow"]["git_version"]
    assert env["cpu"]["logical_cores"] >= 1 and env["gpus"] == []
    assert env["op_determinism"] is True
    assert record["outputs"]["flipped_variable"]


def test_schema_catches_a_broken_record(record):
    broken = json.loads(json.dumps(record))
    broken["fingerprints"]["weights_sha256"] = "not-a-hash"
    del broken["seeds"]["dropout"]
    errors = schema_errors(broken)
    assert any("weights_sha256" in e for e in errors) and any("dropout" in e for e in errors)
    assert schema_errors({**record, "schema": "harness.trial/99"}) != []


def test_a_failed_trial_record_is_valid_without_results(record):
    from harness.trial.train import TrialResult

    failed = {**record, "status": {"code": "nan_loss", "message": "loss became nan at step 3."},
              "metrics": {}, "fingerprints": {}, "timing": {"wall_s": 0.1}}
    assert schema_errors(failed) == []
    assert TrialResult(failed["status"]).status["code"] == "nan_loss"


def test_trial_keys_are_stable_and_distinct(small_config):
    seeds = SeedSet.from_base(0)
    key = trial_key(small_config, seeds, "control", 0)
    assert key == trial_key(small_config, seeds, "control", 0)
    assert len({key, trial_key(small_config, seeds, "control", 1),
                trial_key(small_config, seeds, "kernels", 0),
                trial_key(small_config, seeds.replace(init=1), "control", 0)}) == 4


def test_append_cuts_a_torn_last_line_and_keeps_whole_ones(tmp_path):
    path = tmp_path / "trials.jsonl"
    append_record(path, {"n": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"n": 2, "torn')  # A write a kill interrupted.
    assert read_records(path) == [{"n": 1}]
    append_record(path, {"n": 3})
    assert read_records(path) == [{"n": 1}, {"n": 3}]
    assert path.read_bytes().endswith(b"\n")


def test_a_damaged_whole_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text('{"n": 1}\nnot json\n')
    with pytest.raises(UsageError, match="line 2"):
        read_records(path)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "trials.jsonl"
    append_record(path, {"loss": float("nan"), "curve": [1.0, float("inf")]})
    assert read_records(path) == [{"loss": None, "curve": [1.0, None]}]


@pytest.mark.slow
def test_a_killed_run_leaves_only_whole_valid_lines(tmp_path):
    """SIGKILL a real bench run mid-study, then resume: every line stays whole and valid."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "harness.bench", "--repeats=40", "--conditions=control,init", "--epochs=1",
            "--max_train_examples=200", f"--output_dir={tmp_path}"]
    path = tmp_path / "trials.jsonl"
    kill_after_lines(args, path, 2, env=env)
    survivors = read_records(path)
    assert 2 <= len(survivors) < 80
    assert all(schema_errors(r) == [] for r in survivors)
    # The kill may land mid-line (a replica group writes its records one after another): readers skip
    # the torn tail, and the next append cuts it.

    # Resuming finishes the rest, one record per trial, and keeps the survivors as they were.
    resumed = subprocess.run(args[:3] + ["--repeats=4"] + args[4:], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    records = read_records(path)
    assert records[:len(survivors)] == survivors and path.read_bytes().endswith(b"\n")
    keys = [r["trial_key"] for r in records]
    assert len(keys) == len(set(keys))  # exactly one record per trial
    assert {(r["condition"], r["repeat"]) for r in records} >= {(c, i) for c in ("control", "init") for i in range(4)}


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664)])
def test_whole_files_are_written_with_the_umask_like_any_other_file(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        write_records(tmp_path / "merged.jsonl", [{"a": 1}])
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "merged.jsonl").stat().st_mode) == mode


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB file system, filled but for the records already on it (needs mount rights, as CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine cannot mount a small file system")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_sentence_and_keeps_the_records(full_disk, record):
    study = full_disk / "study"
    append_record(study / "trials.jsonl", record)
    before = (study / "trials.jsonl").read_bytes()
    filler = os.open(full_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, b"\0" * 512):
            pass
    except OSError:
        pass
    os.close(filler)
    with pytest.raises(OSError):  # in-process: a record that does not fit leaves no part behind
        append_record(study / "trials.jsonl", record)
    assert (study / "trials.jsonl").read_bytes() == before
    result = subprocess.run([sys.executable, "-m", "harness.bench", "--conditions=control", "--repeats=1",
                             "--epochs=1", f"--output_dir={study}"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].endswith(": No space left on device; records written before this are kept.")
    assert (study / "trials.jsonl").read_bytes() == before


def test_records_identify_the_model_code_and_the_data(user_files):
    (record,) = run_conditions(user_config(user_files, model_args={"units": 16}), "control", 1, user_files / "study")
    source = hashlib.sha256((user_files / "model.py").read_bytes()).hexdigest()
    model = record["model"]
    assert model["spec"] == f"{user_files}/model.py:create_model" and model["source_sha256"] == source
    assert model["args"] == {"units": 16} and record["config"]["model_args"] == {"units": 16}
    # Dense(64 -> 16) and Dense(16 -> 10), weights and biases.
    assert model["parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert [layer["class"] for layer in model["architecture"]] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert model["optimizer"]["class"] == "Adam" and model["task"] == "multiclass"
    assert model["seed_generators"] == ["dropout#0"]
    assert record["data"]["spec"] == f"npz:{user_files}/data.npz"
    assert record["data"]["train_examples"] == 400 and record["data"]["test_examples"] == 200
    assert len(record["data"]["sha256"]) == 64
    assert record["metrics"]["test_examples"] == 200 and 0 <= record["metrics"]["test_accuracy"] <= 1
