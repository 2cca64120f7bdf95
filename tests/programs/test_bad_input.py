"""Every program over a corpus of bad input: one sentence and exit 1 or 2, never a traceback, and no
record already written changes.

Each case runs the program as a user would, in a fresh process. The corpus holds what hostile or
unlucky users gave the harness: files where directories belong, binary junk, empty and truncated
files, JSON Python reads but JSON does not have, absurd nesting and numbers, unknown names,
impossible counts.
"""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import run_program

JUNK = bytes(range(256)) * 8
# Flags that make a study (and its trials) take seconds, for cases that ran to the end before they were refused.
STUDY = ["--repeats=1", "--conditions=control"]
TINY = ["--epochs=1", "--max_train_examples=200"]


@pytest.fixture(scope="module")
def corpus(small_study, tmp_path_factory):
    """Bad files, and a copy of a real study whose records must survive every case."""
    root = tmp_path_factory.mktemp("corpus")
    study = root / "study"
    shutil.copytree(small_study, study)
    files = {
        "junk": JUNK,
        "empty.json": b"",
        "junk.json": JUNK,
        "truncated.jsonl": (small_study / "trials.jsonl").read_bytes()[:900],
        "nested.json": b"[" * 200_000 + b"]" * 200_000,
        "huge_int.json": b'{"accuracy_tolerance": ' + b"9" * 5000 + b"}",
        "nan_params.json": b'{"learning_rate": NaN}',
        # 4,000 digits: strict JSON reads it (Python's limit is 4,300), no float holds it.
        "long_int_params.json": b'{"learning_rate": ' + b"9" * 4000 + b"}",
        "huge_hidden.json": b'{"hidden_units": 1000000000000}',
        "a_file": b"not a directory",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "a_dir").mkdir()
    os.mkfifo(root / "fifo")  # a reader would block on it for ever
    # 100,000 deep: as an argument it would pass Linux's 128 KiB limit on one, so in a flagfile.
    (root / "deep_args.flags").write_text("--model_args=units=" + "[" * 100_000 + "]" * 100_000 + "\n")
    (root / "nested.flags").write_text(f"--flagfile={root / 'fifo'}\n")
    (root / "ragged.csv").write_text("a,b,label\n1,2,0\n1,2\n3,4,1\n")
    np.savez(root / "complex.npz", x_train=np.ones((40, 4), np.complex64) * 1j, y_train=np.arange(40) % 2)
    # A study copy whose first record is damaged, under a key a case can name.
    damaged = root / "damaged"
    shutil.copytree(small_study, damaged)
    lines = (damaged / "trials.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "repeat": "zero", "trial_key": "abcdef0123456789abcd"})
    (damaged / "trials.jsonl").write_text("\n".join(lines) + "\n")
    (root / "empty_dir").mkdir()
    np.save(root / "array.npy", np.zeros(3))
    # Study copies whose records are not what their summary counted (the gate and the report refuse them).
    for name in ("no_per_example", "two_studies", "empty_trials", "loop_trials"):
        shutil.copytree(small_study, root / name)
    shutil.rmtree(root / "no_per_example" / "per_example")
    other = {**json.loads(lines[1]), "study_id": "0123456789ab", "trial_key": "f" * 20}
    with open(root / "two_studies" / "trials.jsonl", "a") as trials:
        trials.write(json.dumps(other) + "\n")
    (root / "empty_trials" / "trials.jsonl").write_text("")
    (root / "loop_trials" / "trials.jsonl").unlink()
    (root / "loop_trials" / "trials.jsonl").symlink_to("trials.jsonl")
    summary = json.loads((small_study / "summary.json").read_text())
    summary["conditions"].append(summary["conditions"][0])
    (root / "two_rows.json").write_text(json.dumps(summary))
    return root


# (program, arguments with {root} for the corpus directory): each must fail with one sentence.
CASES = [
    ("harness.bench", ["--output_dir={root}/a_file"]),
    ("harness.bench", ["--output_dir={root}/a_file/sub"]),
    ("harness.bench", ["--batch_size=1000000000000", "--repeats=1", "--conditions=control",
                       "--output_dir={root}/out_batch"]),
    ("harness.bench", ["--model={root}/junk:create_model", "--output_dir={root}/out_model"]),
    ("harness.bench", ["--model=examples/mnist_mlp.py:create_model", "--data=npz:{root}/junk",
                       "--output_dir={root}/out_npz"]),
    ("harness.bench", ["--model=examples/mnist_mlp.py:create_model", "--data=csv:{root}/junk",
                       "--output_dir={root}/out_csv"]),
    ("harness.bench", ["--model=examples/mnist_mlp.py:create_model", "--model_args={root}",
                       "--output_dir={root}/out_args"]),
    ("harness.bench", ["--conditions=colour", "--output_dir={root}/out_colour"]),
    ("harness.bench", ["--class_weight=0:1,1:5", *STUDY, "--output_dir={root}/out_class_weight"]),
    ("harness.bench", ["--epochs=0", "--output_dir={root}/out_epochs"]),
    ("harness.bench", ["--cost_blocks=3", "--output_dir={root}/out_cost"]),
    ("harness.bench", ["--hidden_units=1000000000000", *STUDY, "--output_dir={root}/out_hidden"]),
    ("harness.bench", ["--flagfile={root}/junk"]),
    ("harness.bench", ["--repeats=1000000000000", "--conditions=control", "--output_dir={root}/out_repeats"]),
    ("harness.bench", ["--learning_rate=inf", *STUDY, *TINY, "--output_dir={root}/out_inf"]),
    ("harness.bench", ["--epochs=99999999999999999999999", *STUDY, "--output_dir={root}/out_long"]),
    ("harness.bench", ["--intra_op_threads=99999999999999999999", *STUDY, *TINY, "--output_dir={root}/out_threads"]),
    ("harness.bench", ["--reduction_order=99999999999999999999", *STUDY, *TINY, "--output_dir={root}/out_order"]),
    ("harness.bench", ["--output_dir=", *STUDY, *TINY]),
    ("harness.bench", ["--ray_address=127.0.0.1:6379", *STUDY, *TINY, "--output_dir={root}/out_ray"]),
    ("harness.bench", ["--executor=ray", "--ray_gpus_per_trial=nan", *STUDY, *TINY, "--output_dir={root}/out_ray"]),
    ("harness.bench", ["--executor=ray", "--ray_resources=gpu_a100", *STUDY, *TINY, "--output_dir={root}/out_ray"]),
    ("harness.reeval", ["--ray_resources=gpu_a100=1", "--seeds=2", *TINY, "--output_dir={root}/out_reeval"]),
    ("harness.isolation_cost", ["--conditions=nope"]),
    ("harness.gate", ["--baseline={root}/empty.json", "--candidate={root}/study"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/junk.json"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/truncated.jsonl"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study", "--rules={root}/a_dir"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study", "--rules={root}/nested.json"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study", "--rules={root}/huge_int.json"]),
    ("harness.gate", ["--baseline={root}/nested.json", "--candidate={root}/study"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study", "--alpha=nan"]),
    ("harness.report", ["--input_dir={root}/a_file"]),
    ("harness.report", ["--input_dir={root}/empty_dir"]),
    ("harness.report", ["--input_dir={root}/study", "--output_dir={root}/a_file"]),
    ("harness.validate", ["{root}/junk"]),
    ("harness.validate", ["{root}/a_dir"]),
    ("harness.validate", ["{root}/nested.json"]),
    ("harness.reeval", ["--params={root}/a_dir", "--seeds=2", "--output_dir={root}/out_reeval"]),
    ("harness.reeval", ["--params={root}/nested.json", "--seeds=2", "--output_dir={root}/out_reeval"]),
    ("harness.reeval", ["--params={root}/nan_params.json", "--seeds=2", "--output_dir={root}/out_reeval"]),
    ("harness.reeval", ["--params={root}/long_int_params.json", "--seeds=2", "--output_dir={root}/out_reeval"]),
    ("harness.reeval", ["--params={root}/huge_hidden.json", "--seeds=2", "--output_dir={root}/out_reeval"]),
    ("harness.reeval", ["--tuned_score=nan", "--seeds=2", *TINY, "--output_dir={root}/out_reeval"]),
    ("harness.diverge", ["--traces={root}/array.npy,{root}/array.npy", "--output_dir={root}/out_diverge"]),
    ("harness.diverge", ["--traces={root}/junk,{root}/junk", "--output_dir={root}/out_diverge"]),
    ("harness.diverge", ["--traces={root}/a_dir,{root}/junk", "--output_dir={root}/out_diverge"]),
    ("harness.merge", ["--input_dir={root}/empty_dir"]),
    ("harness.merge", ["--input_dir={root}/a_file"]),
    ("harness.tune", ["--space=colour=1..2", "--output_dir={root}/out_tune"]),
    ("harness.tune", ["--n_trials=1", "--output_dir={root}/a_file"]),
    ("harness.compare_configs", ["--config=A:learning_rate=x", "--config=B:learning_rate=0.1",
                                 "--output_dir={root}/out_compare"]),
    ("harness.compare_configs", ["--config=A:hidden_units=1000000000000", "--config=B:", "--seeds=2", *TINY,
                                 "--output_dir={root}/out_compare"]),
    ("harness.compare_configs", ["--config=A:reduction_order=99999999999999999999", "--config=B:", "--seeds=2", *TINY,
                                 "--output_dir={root}/out_compare"]),
    ("harness.scan", ["--model=nope"]),
    ("harness.rerun", ["--input_dir={root}/a_file", "--trial_key=abcdef"]),
    ("harness.rerun", ["--input_dir={root}/study", "--trial_key=zzzzzz"]),
    ("harness.rerun", ["--input_dir={root}/study", "--trial_key=ab"]),
    # Found by a 383-case hostile corpus on a fresh clone (issue 31's second pass).
    ("harness.bench", ["--data=csv:{root}/ragged.csv", "--output_dir={root}/out_ragged"]),
    ("harness.bench", ["--data=npz:{root}/complex.npz", "--output_dir={root}/out_complex"]),
    ("harness.bench", ["--seed=1180591620717411303424", "--output_dir={root}/out_seed"]),
    ("harness.validate", ["{root}/fifo"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study", "--junit_xml={root}/study/trials.jsonl"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study",
                      "--markdown_summary={root}/study/summary.json"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/study", "--junit_xml={root}/fifo"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/damaged"]),
    ("harness.report", ["--input_dir={root}/damaged", "--output_dir={root}/out_report_damaged"]),
    ("harness.rerun", ["--input_dir={root}/damaged", "--trial_key=abcdef"]),
    ("harness.worker", ["--output_dir={root}/out_worker", "--parent_pid=-1"]),
    # Issue 44: another study into a study's directory, input refused late, records a summary does not stand for.
    ("harness.bench", [*STUDY, *TINY, "--output_dir={root}/study"]),
    ("harness.bench", ["--validation_fraction=0.9999999", *STUDY, *TINY, "--output_dir={root}/study"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/no_per_example"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/two_studies"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/empty_trials"]),
    ("harness.gate", ["--baseline={root}/study", "--candidate={root}/loop_trials"]),
    ("harness.report", ["--input_dir={root}/no_per_example", "--output_dir={root}/out_report_no_per_example"]),
    ("harness.validate", ["{root}/two_rows.json"]),
    # Issue 44: bounds a flag lacked, and flagfiles absl would read for ever.
    ("harness.bench", ["--workers=1000000", *STUDY, *TINY, "--output_dir={root}/out_workers"]),
    ("harness.bench", ["--model=examples/mnist_mlp.py:create_model", "--flagfile={root}/deep_args.flags",
                       "--output_dir={root}/out_deep"]),
    ("harness.bench", ["--flagfile=/dev/zero", "--output_dir={root}/out_zero"]),
    ("harness.bench", ["--flagfile={root}/fifo", "--output_dir={root}/out_fifo"]),
    ("harness.gate", ["--flagfile={root}/nested.flags"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("program,args", CASES, ids=[f"{p.split('.')[1]}:{' '.join(a)[:60]}" for p, a in CASES])
def test_bad_input_is_one_sentence_and_no_record_changes(corpus, program, args):
    records = {path: path.read_bytes() for path in (corpus / "study").iterdir() if path.is_file()}
    result = run_program(program, *[a.format(root=corpus) for a in args])
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    said = [line for line in result.stderr.splitlines() if line.startswith(("error:", "FATAL"))]
    assert len(said) == 1 or (program == "harness.validate" and result.returncode == 1), result.stderr
    assert {path: path.read_bytes() for path in records} == records
    assert json.loads((corpus / "study" / "summary.json").read_text())["schema"] == "harness.summary/1"


def said_in_one_sentence(result) -> str:
    """The one `error:` line of a program that refused its input with exit 2 and no traceback."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    said = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(said) == 1, result.stderr
    return said[0]


# What a worker may be handed on stdin instead of the JSON list of trial specs its parent writes.
SPEC = {"study_id": "x", "condition": "control", "repeat": 0, "config": {"benchmark": "digits_mlp"},
        "seeds": {"init": 1, "shuffle": 2, "dropout": 3, "augment": 4, "split": 5}, "env_vars": []}
BAD_STDIN = {
    "junk": JUNK,
    "empty": b"",
    "an object": b"{}",
    "numbers": b"[1]",
    "missing fields": json.dumps([{"study_id": "x"}]).encode(),
    "unknown config field": json.dumps([{**SPEC, "config": {"benchmark": "digits_mlp", "colour": 1}}]).encode(),
    "negative seed": json.dumps([{**SPEC, "seeds": {**SPEC["seeds"], "init": -1}}]).encode(),
    "NaN": b'[{"repeat": NaN}]',
}


@pytest.mark.slow
@pytest.mark.parametrize("stdin", BAD_STDIN.values(), ids=BAD_STDIN)
def test_a_worker_given_bad_stdin_says_so_in_one_sentence(tmp_path, stdin):
    (tmp_path / "stdin").write_bytes(stdin)
    (tmp_path / "study").mkdir()
    with open(tmp_path / "stdin", "rb") as given:
        result = run_program("harness.worker", f"--output_dir={tmp_path / 'study'}", stdin=given)
    assert "stdin" in said_in_one_sentence(result)
    assert list((tmp_path / "study").iterdir()) == []


@pytest.mark.slow
def test_a_worker_without_a_directory_says_so(tmp_path):
    result = run_program("harness.worker", "--output_dir=", input="[]")
    assert said_in_one_sentence(result).startswith("error: flag --output_dir=: ")


# harness.keras_probe OUT STEPS MODE REFERENCE RUN_AS SCRIPT [ARGS], each argument bad in turn.
BAD_PROBE_ARGUMENTS = {
    "none": [],
    "too few": ["{tmp}/out.jsonl", "5", "-", "-", "-"],
    "steps not a number": ["{tmp}/out.jsonl", "x", "-", "-", "-", "{tmp}/ok.py"],
    "no steps": ["{tmp}/out.jsonl", "0", "-", "-", "-", "{tmp}/ok.py"],
    "unknown mode": ["{tmp}/out.jsonl", "5", "nope", "-", "-", "{tmp}/ok.py"],
    "junk reference": ["{tmp}/out.jsonl", "5", "-", "{tmp}/junk", "-", "{tmp}/ok.py"],
    "missing reference": ["{tmp}/out.jsonl", "5", "-", "{tmp}/nope.jsonl", "-", "{tmp}/ok.py"],
    "missing run_as": ["{tmp}/out.jsonl", "5", "-", "-", "{tmp}/nope.py", "{tmp}/ok.py"],
    "missing script": ["{tmp}/out.jsonl", "5", "-", "-", "-", "{tmp}/nope.py"],
    "junk script": ["{tmp}/out.jsonl", "5", "-", "-", "-", "{tmp}/junk"],
    "a directory as script": ["{tmp}/out.jsonl", "5", "-", "-", "-", "{tmp}"],
    "out in no directory": ["{tmp}/nowhere/out.jsonl", "5", "-", "-", "-", "{tmp}/ok.py"],
    "out a directory": ["{tmp}", "5", "-", "-", "-", "{tmp}/ok.py"],
}


@pytest.mark.slow
@pytest.mark.parametrize("arguments", BAD_PROBE_ARGUMENTS.values(), ids=BAD_PROBE_ARGUMENTS)
def test_the_keras_probe_given_bad_arguments_says_so_in_one_sentence(tmp_path, arguments):
    (tmp_path / "ok.py").write_text("print('ran')\n")
    (tmp_path / "junk").write_bytes(JUNK)
    result = run_program("harness.keras_probe", *[a.format(tmp=tmp_path) for a in arguments])
    said_in_one_sentence(result)
    assert "ran" not in result.stdout


@pytest.mark.slow
def test_a_bad_flag_value_is_bad_input_with_exit_2():
    result = run_program("harness.reeval", "--seeds=1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == ("error: flag --seeds=1: 1 is not an integer in the range [2, 10000]; "
                                              "--helpshort lists the flags.")


@pytest.mark.slow
def test_bad_model_input_on_the_command_line_is_one_sentence(user_files):
    result = run_program("harness.bench", f"--model={user_files}/model.py:nope", f"--data=npz:{user_files}/data.npz",
                         "--hidden_units=64", f"--output_dir={user_files / 'out'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("error: --hidden_units shapes the built-in models; set it in your "
                                              "model function (e.g. through --model_args).")
    result = run_program("harness.bench", f"--model={user_files}/model.py:nope", f"--data=npz:{user_files}/data.npz",
                         f"--output_dir={user_files / 'out'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"error: {user_files}/model.py has no function 'nope' (the model "
                                              f"spec '{user_files}/model.py:nope').")
    assert not (user_files / "out" / "trials.jsonl").exists()


LEAVING_MODELS = """\
import ctypes
import os
import signal
import sys
import time

import keras


def hard_exit():
    os._exit(9)


def kills_itself():
    os.kill(os.getpid(), signal.SIGKILL)


def segfaults():
    ctypes.string_at(0)


def never_returns():
    time.sleep(10**6)


def data_never_returns():
    time.sleep(10**6)


class ExitsWhileTraining(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten, self.head = keras.layers.Flatten(), keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.head(self.flatten(x))

    def train_step(self, data):
        sys.exit(5)


def exits_while_training():
    model = ExitsWhileTraining()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


@pytest.mark.slow
def test_model_code_that_leaves_the_process_does_not_end_the_study(user_files):
    """os._exit in the model function is one sentence and exit 2 (it would end the program with the code's own
    exit code); sys.exit in its own train step fails the trial, with that sentence, and the study ends as
    studies end."""
    (user_files / "leaving.py").write_text(LEAVING_MODELS)
    small = ["--repeats=1", "--conditions=control", "--epochs=1", f"--data=npz:{user_files}/data.npz"]
    spec = f"{user_files}/leaving.py:hard_exit"
    result = run_program("harness.bench", f"--model={spec}", *small, f"--output_dir={user_files / 'out1'}")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2, f"error: {spec} called os._exit(9) while building the model."), result.stderr
    spec = f"{user_files}/leaving.py:exits_while_training"
    result = run_program("harness.bench", f"--model={spec}", *small, f"--output_dir={user_files / 'out2'}")
    [record] = [json.loads(line) for line in (user_files / "out2" / "trials.jsonl").read_text().splitlines()]
    assert record["status"] == {"code": "error", "message": f"{spec} called sys.exit(5) while training."}
    # Its only trial failed: the study has no result, which is exit 1 and one sentence, not a finished study.
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"Every trial failed (1 of 1; error: {spec} called sys.exit(5) while training): the study has no result to "
        f"compare. Fix the cause and run the study again in a new --output_dir.")


@pytest.mark.slow
def test_model_code_that_crashes_or_hangs_its_process_is_one_sentence(user_files):
    """Under --isolation=process the model is probed in a process of its own too (issue 44): a model function that
    kills or segfaults its process is one sentence, not a study that ends without a word; with --trial_timeout, a
    model or data function that never returns is one sentence after that long, not a study that hangs for ever."""
    (user_files / "leaving.py").write_text(LEAVING_MODELS)
    small = ["--repeats=1", "--conditions=control", "--epochs=1", "--isolation=process"]
    data = f"--data=npz:{user_files}/data.npz"
    for function, extra, said in (
            ("kills_itself", [data], "ended its process (killed by SIGKILL (the OOM killer or kill -9)) while "
                                     "building the model"),
            ("segfaults", [data], "ended its process (killed by SIGSEGV) while building the model"),
            ("never_returns", [data, "--trial_timeout=5"], "did not return within --trial_timeout=5 s while "
                                                           "building the model")):
        spec = f"{user_files}/leaving.py:{function}"
        result = run_program("harness.bench", f"--model={spec}", *small, *extra,
                             f"--output_dir={user_files / function}")
        assert said_in_one_sentence(result) == f"error: {spec} {said}.", result.stderr
        assert not (user_files / function / "trials.jsonl").exists()
    result = run_program("harness.bench", f"--data={user_files}/leaving.py:data_never_returns", *small,
                         "--trial_timeout=5", f"--output_dir={user_files / 'data'}")
    assert said_in_one_sentence(result) == (f"error: {user_files}/leaving.py:data_never_returns did not return "
                                            "within --trial_timeout=5 s while loading the data.")
