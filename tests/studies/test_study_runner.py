"""Running a study: isolation and workers do not change results, kills resume, changed inputs are refused."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, USER_MODEL, kill_after_lines, plan_conditions, run_conditions, run_program, user_config

from harness.analysis.summary import build_summary
from harness.errors import UsageError
from harness.platform import environment
from harness.studies import conditions, study_runner
from harness.studies.progress import Progress
from harness.studies.records import read_records, schema_errors
from harness.trial.config import load_benchmark
from harness.trial.datasets import load_dataset
from harness.trial.seeds import SeedSet


def _fingerprints(output_dir):
    return {r["trial_key"]: r["fingerprints"] for r in read_records(output_dir / "trials.jsonl")}


def _results(output_dir):
    # Everything but timing and time of day.
    return {r["trial_key"]: (r["fingerprints"], r["metrics"], r["status"], r["seeds"], r["config"])
            for r in read_records(output_dir / "trials.jsonl")}


@pytest.mark.slow
def test_inprocess_and_process_isolation_give_identical_weights(tmp_path):
    _, _, specs = plan_conditions("control,kernels,init", repeats=2)
    study_runner.execute(specs, tmp_path / "inprocess")
    study_runner.execute(specs, tmp_path / "process", isolation="process", workers=2)
    inprocess, process = _fingerprints(tmp_path / "inprocess"), _fingerprints(tmp_path / "process")
    assert len(inprocess) == len(specs) and inprocess == process
    workers = {r["environment"]["op_determinism"] for r in read_records(tmp_path / "process" / "trials.jsonl")}
    assert workers == {True, False}


@pytest.mark.slow
def test_two_workers_give_the_same_records_as_one(tmp_path):
    # Replica groups of 2 on the three paths (fused, batched, grouped): each group is one worker's, whole.
    _, _, specs = plan_conditions("init,all,order", repeats=2, replicas=2)
    jobs = study_runner._jobs(specs, "inprocess", workers=2)
    assert [[s.condition for s in job] for job in jobs] == [["init", "init", "order", "order"], ["all", "all"]]
    study_runner.execute(specs, tmp_path / "one", workers=1)
    study_runner.execute(specs, tmp_path / "two", workers=2)
    assert _results(tmp_path / "one") == _results(tmp_path / "two")
    paths = sorted(r["outputs"]["vectorized"]["path"] for r in read_records(tmp_path / "two" / "trials.jsonl"))
    assert paths == ["batched", "batched", "fused", "fused", "grouped", "grouped"]
    lines = (tmp_path / "two" / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(specs) and all(json.loads(line) for line in lines)


@pytest.mark.slow
def test_environment_variant_runs_in_its_own_process_and_is_compared_with_control(tmp_path):
    chosen = conditions.parse_conditions("control,env:threads=1")
    base, seeds, specs = plan_conditions("control,env:threads=1", repeats=2)
    study_runner.execute(specs, tmp_path)
    records = study_runner.study_records(specs, tmp_path)
    threads = [r for r in records if r["condition"] == "env:threads=1"]
    assert [r["environment"]["threads"] for r in threads] == [{"intra_op": 1, "inter_op": 1}] * 2
    summary = build_summary(study_id="test", base_config=base.as_dict(), base_seeds=seeds.as_dict(),
                            conditions=chosen, repeats=2, records=records, environment={}, wall_s=1.0,
                            directory=tmp_path)
    row = summary["conditions"][1]
    assert row["matches_control_bitwise"] in (True, False)
    assert any(line.startswith("env:threads=1") for line in summary["findings"])


@pytest.mark.slow
def test_summary_of_a_real_study_is_valid_and_says_what_varied(tmp_path):
    names = "control,kernels,init,dropout,all,bit"
    base, seeds, specs = plan_conditions(names, repeats=3)
    study_runner.execute(specs, tmp_path)
    summary = build_summary(study_id="test", base_config=base.as_dict(), base_seeds=seeds.as_dict(),
                            conditions=conditions.parse_conditions(names), repeats=3,
                            records=study_runner.study_records(specs, tmp_path), environment={}, wall_s=1.0,
                            directory=tmp_path)
    assert schema_errors(summary) == []
    rows = {row["name"]: row for row in summary["conditions"]}
    control = rows["control"]
    assert control["n_ok"] == 3 and control["unique_weight_hashes"] == 1
    assert control["bitwise_reproducible"] is True and control["test_accuracy"]["sd"] == 0.0
    assert control["mean_pairwise_disagreement"] == 0.0
    for name in ("init", "dropout", "all"):
        assert rows[name]["test_loss"]["sd"] > 0 and rows[name]["unique_weight_hashes"] == 3
        assert rows[name]["sd_share_of_all"] is not None
    assert rows["bit"]["unique_weight_hashes"] == 3
    # No interleaved cost measurement here (no cost.json): kernels' ratio is of trials timed apart, said so,
    # with no interval (harness.bench measures it interleaved: tests/trial/test_cost.py, tests/analysis).
    ratio = rows["kernels"]["step_time_ratio_vs_control"]
    assert ratio["method"] == "timed apart" and ratio["ci95"] is None and ratio["ratio"] > 0
    assert rows["kernels"]["matches_control_bitwise"] in (True, False)
    assert rows["init"]["matches_control_bitwise"] is None
    assert 0 < rows["all"]["noise_floor"] < 0.1


@pytest.mark.slow
def test_a_killed_study_resumes_to_exactly_one_record_per_trial(tmp_path):
    args = [sys.executable, "-m", "harness.bench", "--conditions=control,init,kernels", "--repeats=6",
            "--epochs=1", "--max_train_examples=200", f"--output_dir={tmp_path}"]
    path = tmp_path / "trials.jsonl"
    kill_after_lines(args, path, 3)
    before = len(read_records(path))
    assert 3 <= before < 18
    resumed = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    records = read_records(path)
    assert len(records) == 18 and len({r["trial_key"] for r in records}) == 18
    assert f"{18 - before} trial(s) ran now" in resumed.stdout
    assert schema_errors(json.loads((tmp_path / "summary.json").read_text())) == []


@pytest.mark.slow
def test_resuming_under_another_environment_is_refused_and_keeps_the_records(tmp_path):
    from conftest import run_program

    args = ["--conditions=control", "--epochs=1", "--max_train_examples=200", f"--output_dir={tmp_path}"]
    # oneDNN on by name: unset, TensorFlow turns it on only on some CPUs.
    assert run_program("harness.bench", *args, "--repeats=1", env_vars={"TF_ENABLE_ONEDNN_OPTS": "1"}).returncode == 0
    before = (tmp_path / "trials.jsonl").read_bytes()
    assert json.loads((tmp_path / "study.json").read_text())["environment"]["oneDNN"] == "on"
    result = run_program("harness.bench", *args, "--repeats=2", env_vars={"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: the trials in {tmp_path} were recorded in another environment (oneDNN on then, off now); their "
        "bits do not compare with this run's: resume where they ran, or study this environment in a new "
        "--output_dir.")
    assert (tmp_path / "trials.jsonl").read_bytes() == before


REFUSAL_END = ("; their bits do not compare with this run's: resume where they ran, or study this environment in a "
               "new --output_dir")


@pytest.mark.parametrize("setting", list(environment.BIT_SETTINGS))
def test_a_resume_is_refused_when_any_setting_that_changes_bits_differs(tmp_path, setting):
    now = environment.capture()
    then = copy.deepcopy(now)
    *parents, leaf = environment.BIT_SETTINGS[setting]
    holder = then
    for key in parents:
        holder = holder[key]
    holder[leaf] = "--changed-for-this-test"
    with pytest.raises(UsageError) as raised:
        study_runner.refuse_other_environments([{"condition": "control", "environment": then}], tmp_path)
    assert str(raised.value) == (f"the trials in {tmp_path} were recorded in another environment ({setting} "
                                 f"--changed-for-this-test then, {environment.bit_identity(now)[setting]} now)"
                                 + REFUSAL_END)


def test_a_condition_that_changes_a_setting_itself_is_not_refused_for_it(tmp_path):
    now = environment.capture()
    onednn_off = {**now, "onednn_enabled": False, "env_vars": {**now["env_vars"], "TF_ENABLE_ONEDNN_OPTS": "0"}}
    one_thread = {**now, "threads": {"intra_op": 1, "inter_op": 1}}
    study_runner.refuse_other_environments([{"condition": "env:onednn=0", "environment": onednn_off},
                                            {"condition": "env:threads=1", "environment": one_thread}], tmp_path)
    # A rerun trains with the record's own config, which sets the pools.
    study_runner.refuse_other_environments([{"condition": "control", "environment": one_thread}], tmp_path,
                                           thread_pools_from_config=True)
    with pytest.raises(UsageError, match=r"\(intra-op threads 1 then, 0 now; inter-op threads 1 then, 0 now\)"):
        study_runner.refuse_other_environments([{"condition": "control", "environment": one_thread}], tmp_path)
    # A record of an older harness that did not record a setting is not taken for this environment's.
    older = {**now, "cpu": {"model": now["cpu"]["model"]}}
    with pytest.raises(UsageError, match=r"\(CPU instruction sets not recorded then, "):
        study_runner.refuse_other_environments([{"condition": "control", "environment": older}], tmp_path)


def test_records_of_another_schema_or_with_nan_are_not_adopted(tmp_path):
    _, _, specs = plan_conditions("control", repeats=1)
    study_runner.execute(specs, tmp_path)
    path = tmp_path / "trials.jsonl"
    record = read_records(path)[0]
    path.write_text(json.dumps({**record, "schema": "harness.trial/2"}) + "\n")
    with pytest.raises(UsageError) as raised:
        study_runner.execute(specs, tmp_path)
    assert str(raised.value) == (f"{path} holds 'harness.trial/2' records and this harness writes 'harness.trial/1'; "
                                 "study in a new --output_dir (or resume with the harness version that wrote them)")
    for token in ("NaN", "Infinity", "1e999"):
        path.write_text(json.dumps(record).replace('"test_loss": ', f'"test_loss": {token}, "was": ', 1) + "\n")
        with pytest.raises(UsageError) as raised:
            study_runner.execute(specs, tmp_path)
        assert str(raised.value) == f"{path} line 1 holds {token}, which is not JSON (RFC 8259)."
    # A damaged record of the right schema is refused before a trial runs, not after new records are appended.
    for damaged in ({**record, "repeat": "zero"}, {k: v for k, v in record.items() if k != "metrics"}):
        path.write_text(json.dumps(damaged) + "\n")
        with pytest.raises(UsageError) as raised:
            study_runner.execute(specs, tmp_path)
        assert str(raised.value).startswith(f"{path} record 1 is not a valid harness.trial/1 record (")
        assert str(raised.value).endswith("); repair or remove it (python -m harness.validate lists every problem), "
                                          "or study in a new --output_dir")
        assert path.read_text() == json.dumps(damaged) + "\n"


def _children(pid):
    """The harness.worker processes `pid` started."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            if b"harness.worker" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_its_trial_and_a_resume_runs_it(tmp_path):
    args = [sys.executable, "-m", "harness.bench", "--conditions=control", "--repeats=3", "--isolation=process",
            "--epochs=1", "--max_train_examples=200", f"--output_dir={tmp_path}"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, killed = time.time() + 120, None
    while killed is None and time.time() < deadline:
        try:
            workers = _children(process.pid)
        except (FileNotFoundError, ProcessLookupError):
            workers = []
        if workers:
            time.sleep(1.0)  # inside its trial: TensorFlow imported, training under way
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
        time.sleep(0.02)
    stdout, stderr = process.communicate(timeout=300)
    assert killed is not None
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert ("1 trial(s) were lost, not run to the end (worker process killed by SIGKILL (the OOM killer or kill -9)"
            in stdout)
    # A fresh directory: the lost trial is neither run nor recorded before.
    assert "2 trial(s) ran now, 0 already recorded, 1 lost; " in stdout
    records = read_records(tmp_path / "trials.jsonl")
    assert len(records) == 2 and all(r["status"]["code"] == "ok" for r in records)
    lost = read_records(tmp_path / "lost.jsonl")
    assert len(lost) == 1 and lost[0]["reason"].startswith("worker process killed by SIGKILL")
    assert "oneDNN custom operations" not in lost[0]["reason"]
    resumed = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    records = read_records(tmp_path / "trials.jsonl")
    assert len(records) == 3 and len({r["trial_key"] for r in records}) == 3
    assert all(r["status"]["code"] == "ok" for r in records)
    assert "1 trial(s) ran now, 2 already recorded; " in resumed.stdout


def _workers_of(output_dir):
    """Every running harness.worker process writing to `output_dir`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"harness.worker" in text and f"--output_dir={output_dir}".encode() in text:
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_run_that_started_them(tmp_path, sent):
    # Two long-lived workers, each with a job of 6 trials one at a time (not a process per trial, which would
    # leave moments with one worker or none).
    args = [sys.executable, "-m", "harness.bench", "--conditions=control,kernels", "--repeats=6", "--workers=2",
            "--replicas=1", "--epochs=20", "--max_train_examples=1000", "--cost_blocks=0", f"--output_dir={tmp_path}"]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while len(_workers_of(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # both workers importing TensorFlow or inside their trials
    assert len(_workers_of(tmp_path)) == 2, "the study did not start 2 workers"
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)
    if sent == signal.SIGTERM:
        assert process.returncode == 143 and "Traceback" not in stderr
        assert stderr.splitlines()[-1] == "terminated (SIGTERM); records written so far are kept."
    deadline = time.time() + 5
    while _workers_of(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    assert _workers_of(tmp_path) == []
    written = (tmp_path / "trials.jsonl").read_bytes() if (tmp_path / "trials.jsonl").exists() else b""
    time.sleep(8)  # a worker left running would append its trial in these seconds
    after = (tmp_path / "trials.jsonl").read_bytes() if (tmp_path / "trials.jsonl").exists() else b""
    assert after == written


def test_a_worker_that_dies_after_recording_its_trials_loses_none(tmp_path, caplog):
    _, _, specs = plan_conditions("control", repeats=1)
    study_runner.execute(specs, tmp_path)
    progress = Progress([], total=1)
    study_runner._worker_died(specs, tmp_path, -9, "", progress)
    progress.close()
    assert not (tmp_path / "lost.jsonl").exists()
    assert "worker process killed by SIGKILL (the OOM killer or kill -9) after recording all its trials; none is " \
           "lost" in caplog.text


@pytest.mark.slow
def test_a_second_run_into_a_held_directory_stops_and_a_dead_holders_lock_is_taken_over(tmp_path):
    import socket

    from conftest import run_program

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom harness.studies.storage import exclusive\n"
         f"with exclusive({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(120)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["--conditions=control", "--repeats=1", "--epochs=1", "--max_train_examples=200",
                f"--output_dir={tmp_path}"]
        second = run_program("harness.bench", *args)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert second.stderr.splitlines()[-1].startswith(
            f"error: another run is writing to {tmp_path} (pid {holder.pid} on host {socket.gethostname()}, since ")
        assert second.stderr.splitlines()[-1].endswith("); wait for it to end, or give this run another --output_dir.")
        assert not (tmp_path / "trials.jsonl").exists()
    finally:
        holder.kill()  # SIGKILL: no chance to release; the flock dies with the process
        holder.wait()
    taken_over = run_program("harness.bench", *args)
    assert taken_over.returncode == 0, taken_over.stderr
    assert len(read_records(tmp_path / "trials.jsonl")) == 1


def test_cpu_load_is_a_measured_condition_that_matches_control_here(tmp_path):
    from harness.studies.background_load import busy_cores

    def spinners():
        return [c for c in (Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split())
                if b"while True" in Path(f"/proc/{c}/cmdline").read_bytes()]

    with busy_cores(2) as count:
        # A just-started child can be missing from /proc for a moment: look again for up to 5 s.
        deadline = time.time() + 5
        while len(spinners()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert count == 2 and len(spinners()) == 2
    assert spinners() == []
    _, _, specs = plan_conditions("control,env:load=1", repeats=1)
    study_runner.execute(specs, tmp_path)
    records = {r["condition"]: r for r in read_records(tmp_path / "trials.jsonl")}
    assert conditions.condition("env:load=1").background_load is True
    # Same seeds and config as control, every core busy: the bits do not change.
    assert records["env:load=1"]["fingerprints"]["weights_sha256"] == records["control"]["fingerprints"][
        "weights_sha256"]


@pytest.mark.slow
def test_resuming_after_the_model_file_changed_is_refused(user_files):
    args = [f"--model={user_files}/model.py:create_model", f"--data=npz:{user_files}/data.npz", "--epochs=1",
            "--conditions=control", "--repeats=1", f"--output_dir={user_files / 'study'}"]
    assert run_program("harness.bench", *args).returncode == 0
    before = (user_files / "study" / "trials.jsonl").read_bytes()
    (user_files / "model.py").write_text(USER_MODEL.replace("units=32", "units=48"))
    result = run_program("harness.bench", *args, "--repeats=2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # TF's start-up lines come first (TF 2.21 prints them before logging is set up); the sentence is last.
    assert result.stderr.splitlines()[-1].startswith(
        f"error: the source of {user_files}/model.py:create_model changed since the trials in "
        f"{user_files / 'study'} were recorded (sha256 ")
    assert (user_files / "study" / "trials.jsonl").read_bytes() == before


def test_resuming_after_the_data_changed_is_refused(user_files):
    config = user_config(user_files, epochs=1)
    run_conditions(config, "control", 1, user_files / "study")
    digits = load_dataset("digits")
    np.savez(user_files / "data.npz", x_train=digits.train_x[:401], y_train=digits.train_y[:401],
             x_test=digits.test_x[:200], y_test=digits.test_y[:200])
    load_dataset.cache_clear()
    with pytest.raises(UsageError, match=r"^the data npz:\S+ changed since the trials in \S+ were recorded"):
        run_conditions(config, "control", 2, user_files / "study")


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


HANGING_MODEL = """\
import time

import keras
import tensorflow as tf


def create_model():
    # Hangs where the trial runs with one intra-op thread (the env:threads=1 condition), as a model that waits on
    # something that never comes would; elsewhere a small model.
    if tf.config.threading.get_intra_op_parallelism_threads() == 1:
        time.sleep(10**6)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


@pytest.mark.slow
def test_a_trial_past_its_time_limit_fails_with_why_and_the_study_goes_on(tmp_path):
    digits = load_dataset("digits")
    np.savez(tmp_path / "data.npz", x_train=digits.train_x[:300], y_train=digits.train_y[:300],
             x_test=digits.test_x[:100], y_test=digits.test_y[:100])
    (tmp_path / "hanging.py").write_text(HANGING_MODEL)
    started = time.time()
    result = run_program("harness.bench", f"--model={tmp_path}/hanging.py:create_model",
                         f"--data=npz:{tmp_path}/data.npz", "--conditions=control,env:threads=1", "--repeats=1",
                         "--epochs=1", "--trial_timeout=20",
                         f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    records = {r["condition"]: r for r in read_records(tmp_path / "out" / "trials.jsonl")}
    assert records["control"]["status"]["code"] == "ok"
    assert records["env:threads=1"]["status"] == {
        "code": "error", "message": "did not finish within --trial_timeout=20 s: stopped (its worker process ended)"}
    assert schema_errors(records["env:threads=1"]) == []
    assert "1 trial(s) ran now" not in result.stdout and "2 trial(s) ran now, 0 already recorded" in result.stdout
    assert time.time() - started < 150
