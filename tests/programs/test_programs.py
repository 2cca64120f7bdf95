"""The programs as a user runs them: fresh processes, exit codes, one-sentence errors."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, run_program

from harness.studies.records import read_records, schema_errors

TINY = ["--epochs=2", "--max_train_examples=300"]
CONTROL = ["--conditions=control"]


@pytest.mark.slow
def test_two_fresh_processes_give_identical_weights(tmp_path):
    hashes = []
    for run in ("a", "b"):
        result = run_program("harness.bench", "--repeats=1", *CONTROL, *TINY, f"--output_dir={tmp_path / run}")
        assert result.returncode == 0, result.stderr
        (record,) = read_records(tmp_path / run / "trials.jsonl")
        assert schema_errors(record) == []
        hashes.append(record["fingerprints"])
    assert hashes[0] == hashes[1]


@pytest.mark.slow
def test_a_fresh_process_matches_a_trial_run_in_this_process(tmp_path):
    from harness.trial.config import DEFAULT_BENCHMARK, load_benchmark
    from harness.trial.seeds import SeedSet
    from harness.trial.train import run_trial

    result = run_program("harness.bench", "--repeats=1", "--seed=5", *CONTROL, *TINY, f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    (record,) = read_records(tmp_path / "trials.jsonl")
    assert record["config"]["benchmark"] == DEFAULT_BENCHMARK  # no --benchmark: the default study's
    here = run_trial(load_benchmark(DEFAULT_BENCHMARK, epochs=2, max_train_examples=300), SeedSet.from_base(5))
    assert record["fingerprints"] == here.fingerprints


@pytest.mark.slow
def test_bench_prints_the_study_table_and_writes_a_valid_summary(tmp_path):
    from harness.analysis.summary import verdict_lines

    result = run_program("harness.bench", "--repeats=2", "--init_seed=11", "--conditions=control,init,env:xla=1",
                         *TINY, f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    # The answer in short is the first thing printed after the progress (on stderr), then the table (issue 45).
    verdict = verdict_lines(summary)
    assert result.stdout.splitlines()[:len(verdict) + 1] == [*verdict, ""], result.stdout
    assert verdict == [
        "Bitwise reproducible here: yes, 2 control runs alike; XLA on changes the bits.",
        verdict[1], "Sources: init alone was varied; vary others to rank them.", verdict[3]]
    assert verdict[1].startswith("Run to run, test accuracy moves by SD ") and \
        verdict[1].endswith(" in init, the most of any condition.")
    assert verdict[3].startswith("Deterministic kernels cost ") and "95% CI [" in verdict[3]
    header = next(line for line in result.stdout.splitlines() if line.startswith("condition"))
    for column in ("test acc % mean", "SD 95% CI", "of all", "churn % [95% CI]", "hashes", "step ms", "vs control"):
        assert column in header
    assert "all 2 control runs gave bitwise-identical weights" in result.stdout
    # control and init trained as replica groups (auto); env:xla=1 cannot, and the study says why.
    assert ("Trained one at a time, not in replica groups: env:xla=1, as XLA would compile the group's step as "
            "one cluster, fused across replicas, so its bits could differ." in result.stdout)
    records = read_records(tmp_path / "trials.jsonl")
    assert sorted(r["condition"] for r in records) == ["control", "control", "env:xla=1", "env:xla=1", "init", "init"]
    assert {r["condition"] for r in records if "vectorized" in r["outputs"]} == {"control", "init"}
    assert [r["seeds"]["init"] for r in records if r["condition"] == "control"] == [11, 11]
    assert schema_errors(summary) == []
    # A log (stderr is not a terminal) has a line per trial, and one per replica group, its time said once.
    assert re.search(r"^\[2/6\] control: group of 2 in \d+\.\ds \(2 ok\); ETA ", result.stderr, re.MULTILINE)
    assert re.search(r"^\[6/6\] env:xla=1: ok in \d+\.\ds; done$", result.stderr, re.MULTILINE)
    # After the last trial, no silent minute: each phase that takes seconds says what it is doing.
    after = result.stderr[result.stderr.index("; done\n"):].splitlines()
    assert [line.split(" (")[0] for line in after if line.startswith("... ")] == [
        "... measuring what determinism costs", "... summarizing 6 trial records"]
    # A resume that trains nothing still starts Python, imports TensorFlow and writes the summary: "in all" says so.
    again = run_program("harness.bench", "--repeats=2", "--init_seed=11", "--conditions=control,init,env:xla=1",
                        *TINY, f"--output_dir={tmp_path}")
    took = re.search(r"^0 trial\(s\) ran now, 6 already recorded; (\d+)s in all \(the study itself: (\d+)s\); ",
                     again.stdout, re.MULTILINE)
    assert again.returncode == 0 and took and int(took[1]) >= int(took[2]) and int(took[1]) >= 1, again.stdout


@pytest.mark.slow
def test_flagfile_works(tmp_path):
    flagfile = tmp_path / "trial.flags"
    flagfile.write_text("\n".join(["--repeats=1", "--conditions=kernels", *TINY, f"--output_dir={tmp_path}"]))
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
    (["--determinism=on"], "bench sets op determinism per condition"),
    (["--conditions=control,nope"], "unknown condition 'nope'"),
    (["--conditions=env:gpus=2"], "bad environment variant"),
    (["--conditions=control,control"], "names a condition twice"),
    (["--isolation=docker"], "isolation"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["stray"], "unexpected arguments"),
])
@pytest.mark.slow
def test_bad_input_gets_one_sentence_and_a_nonzero_exit(tmp_path, args, message):
    result = run_program("harness.bench", *args, f"--output_dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "trials.jsonl").exists()


def test_every_listed_benchmark_is_a_loadable_definition():
    from harness.trial.config import benchmark_names, load_benchmark

    names = benchmark_names()
    assert {"digits_mlp", "mnist_mlp", "random_regression", "synthetic_mlp", "cifar10_cnn", "embedding"} <= set(names)
    assert "speed" not in names
    for name in names:
        assert load_benchmark(name).benchmark == name


@pytest.mark.slow
def test_tensorflows_start_up_banners_stay_out_of_the_way_unless_verbosity_asks():
    """TF 2.21 prints its oneDNN and CPU-feature notices on import, before TF_CPP_MIN_LOG_LEVEL applies."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    # TensorFlow prints the oneDNN notice only where oneDNN is on: by default only on CPUs with AVX-512 VNNI/BF16,
    # AVX-VNNI or AMX, so it is turned on here to make the notice appear on any CPU.
    env.update(PYTHONPATH=str(REPO), TF_ENABLE_ONEDNN_OPTS="1")

    def scan(*extra):
        return subprocess.run([sys.executable, "-m", "harness.scan", "--benchmark=digits_mlp", *extra], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)

    quiet, verbose = scan(), scan("--verbosity=0")
    assert quiet.returncode == 0 and "op types in one traced train step" in quiet.stdout
    assert "oneDNN custom operations" not in quiet.stderr and "InitializeLog" not in quiet.stderr, quiet.stderr
    assert "oneDNN custom operations" in verbose.stderr


TERMINATED = "terminated (SIGTERM); records written so far are kept."
# A program whose SIGTERM is handled inside a finalizer, as one reaching reeval while the garbage collector ran
# TensorFlow's ConcreteFunctionGarbageCollector.__del__ was: Python drops what a finalizer raises ("Exception
# ignored in ..."), so the run went on to its end as if never told to stop.
SIGTERM_IN_A_FINALIZER = """\
import os, signal, time
from harness import cli

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # Python's handler runs here, in the finalizer
            pass

def main(argv):
    Finalized()
    time.sleep(60)  # the rest of the run
    return 0

cli.run(main, writes_records=True)
"""


def test_a_sigterm_a_finalizer_swallowed_still_ends_the_program(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", SIGTERM_IN_A_FINALIZER], cwd=tmp_path, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 143 and stderr.splitlines() == [TERMINATED], stderr


def _records_are_whole(path):
    text = path.read_text() if path.exists() else ""
    assert text == "" or text.endswith("\n")
    records = read_records(path)
    assert all(schema_errors(r) == [] for r in records) and len({r["trial_key"] for r in records}) == len(records)
    return records


@pytest.mark.slow
def test_reeval_ends_within_seconds_of_sigterm_and_keeps_its_records(tmp_path):
    import signal
    import time

    from conftest import SCORING_FLAGS

    # One trial at a time over many seeds: a run that would go on for minutes, recording a trial a second.
    args = [sys.executable, "-m", "harness.reeval", "--learning_rate=0.01", "--seeds=300", "--replicas=1",
            *SCORING_FLAGS, f"--output_dir={tmp_path}"]
    process = subprocess.Popen(args, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        trials, deadline = tmp_path / "trials.jsonl", time.monotonic() + 180
        while time.monotonic() < deadline and (not trials.exists() or trials.read_bytes().count(b"\n") < 2):
            time.sleep(0.05)
        assert trials.exists(), "reeval recorded no trial in 3 minutes"
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        said, lines = None, []
        for line in process.stderr:  # until the sentence, then the time the process takes to end
            lines.append(line.rstrip("\n"))
            if lines[-1] == TERMINATED:
                said = time.monotonic()
                break
        process.wait(timeout=60)
        ended = time.monotonic()
    finally:
        process.kill()
    assert process.returncode == 143 and said is not None, "\n".join(lines[-20:])
    # Within seconds of the signal, and at once after the sentence (the interpreter's teardown took 2 to 5 s).
    assert ended - sent < 10 and ended - said < 1.5, (ended - sent, ended - said)
    assert not [line for line in lines if "Traceback" in line or "Exception ignored" in line]
    assert len(_records_are_whole(trials)) >= 2
