"""The programs as a user runs them: fresh processes, exit codes, one-sentence errors."""

import json

import pytest
from conftest import run_program

from harness.records import read_records, schema_errors

TINY = ["--epochs=2", "--max_train_examples=300"]


def test_two_fresh_processes_give_identical_weights(tmp_path):
    hashes = []
    for run in ("a", "b"):
        result = run_program("harness.bench", "--repeats=1", *TINY, f"--output_dir={tmp_path / run}")
        assert result.returncode == 0, result.stderr
        (record,) = read_records(tmp_path / run / "trials.jsonl")
        assert schema_errors(record) == []
        hashes.append(record["fingerprints"])
    assert hashes[0] == hashes[1]


def test_a_fresh_process_matches_a_trial_run_in_this_process(tmp_path):
    from harness.config import load_benchmark
    from harness.seeds import SeedSet
    from harness.train import run_trial

    result = run_program("harness.bench", "--repeats=1", "--seed=5", *TINY, f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    (record,) = read_records(tmp_path / "trials.jsonl")
    here = run_trial(load_benchmark("digits_mlp", epochs=2, max_train_examples=300), SeedSet.from_base(5))
    assert record["fingerprints"] == here.fingerprints


def test_bench_prints_a_table_and_the_hash_count(tmp_path):
    result = run_program("harness.bench", "--repeats=2", "--init_seed=11", *TINY, f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert "weights_sha256" in result.stdout and "examples/s" in result.stdout
    assert "1 unique weight hash(es) over 2 trial(s)" in result.stdout
    records = read_records(tmp_path / "trials.jsonl")
    assert [r["seeds"]["init"] for r in records] == [11, 11]
    assert {r["condition"] for r in records} == {"control"}


def test_flagfile_works(tmp_path):
    flagfile = tmp_path / "trial.flags"
    flagfile.write_text("\n".join(["--repeats=1", "--determinism=off", *TINY, f"--output_dir={tmp_path}"]))
    result = run_program("harness.bench", f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr
    (record,) = read_records(tmp_path / "trials.jsonl")
    assert record["condition"] == "kernels" and record["config"]["determinism"] is False
    assert json.dumps(record)


@pytest.mark.parametrize("args,message", [
    (["--benchmark=nope"], "unknown benchmark 'nope'"),
    (["--dataset=imagenet"], "unknown dataset 'imagenet'"),
    (["--dataset=tfds:mnist", "--data_dir=/nonexistent"], "not prepared"),
    (["--epochs=0"], "--epochs must be at least 1"),
    (["--dropout_rate=1.5"], "--dropout_rate must be in [0, 1)"),
    (["--flip_bit=100000000"], "past the model's"),
    (["--benchmark=random_regression", "--augment"], "--augment needs an image dataset"),
    (["--determinism=maybe"], "determinism"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["stray"], "unexpected arguments"),
])
def test_bad_input_gets_one_sentence_and_a_nonzero_exit(tmp_path, args, message):
    result = run_program("harness.bench", *args, f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "trials.jsonl").exists()
