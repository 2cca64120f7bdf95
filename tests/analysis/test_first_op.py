"""The first op where two runs part, checked against differences planted in a known place: a random op in
code only run B runs, one bit of an initial weight, and nothing planted."""

import json

import pytest
from conftest import run_program, user_config
from test_divergence import PLANTED_MODEL

from harness.analysis.first_op import cause_of, first_op, format_first_op
from harness.studies.records import schema_errors
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial


def _ops(config):
    trace = run_trial(config, SeedSet.from_base(0), trace=True, trace_ops=True).trace
    return {**trace["op_table"], "op_steps": trace["op_steps"], "runtime_ran": [], "xla_clusters": []}


@pytest.fixture
def planted(user_files):
    (user_files / "model.py").write_text((user_files / "model.py").read_text() + "\n\n" + PLANTED_MODEL)
    return user_config(user_files, "planted", epochs=1)


@pytest.mark.slow  # two or three trials: about 15 s
def test_the_random_op_only_run_b_runs_is_named(planted, monkeypatch):
    a = _ops(planted)
    monkeypatch.setenv("PLANTED", "1")
    b = _ops(planted)
    found = first_op(a, b)
    # The planted noise: tf.shape, the random op, its scale and shift, the add, and their gradients, in B only.
    assert found["a_only"] == [] and {"RandomStandardNormal", "AddV2"} <= {op["type"] for op in found["b_only"]}
    assert all("/mid" in op["name"] for op in found["b_only"])
    assert found["one_run_only"] == "b" and found["type"] == "RandomStandardNormal"
    assert found["op"].endswith("/random_normal/RandomStandardNormal") and "/mid" in found["op"]
    found.update(cause_of(found, {"PLANTED": "1"}))
    assert found["cause"] == "a random op in code that only run B runs (a conditional branch; run B sets PLANTED=1)"
    assert found["remedy"] is None
    said = format_first_op(found)
    assert (f"The first op of those that makes new values: `{found['op']}` (RandomStandardNormal), in run B only."
            in said)


@pytest.mark.slow  # two or three trials: about 15 s
def test_a_flipped_bit_is_the_read_of_its_variable_and_nothing_planted_never_parts():
    config = load_benchmark("digits_mlp", epochs=1, max_train_examples=100)
    a, again, flipped = _ops(config), _ops(config), _ops(load_benchmark("digits_mlp", epochs=1, max_train_examples=100,
                                                                       flip_bit=500))
    found = first_op(a, flipped)
    # Weight 500 is in dense1's kernel: its read, whose input (the variable's handle) is the same, differs first.
    assert (found["step"], found["op"], found["type"], found["inputs_equal"]) == (
        0, "MatMul/ReadVariableOp", "ReadVariableOp", True)
    assert found["a_only"] == found["b_only"] == [] and found["in_xla"] == []
    same = first_op(a, again)
    assert same["op"] is None and same["step"] is None and same["a_only"] == same["b_only"] == []
    same.update(cause_of(same, {}))
    assert format_first_op(same).startswith("The op-level runs agree: every op's inputs and outputs are bitwise "
                                            f"equal in all {len(a['op_steps'])} steps")


@pytest.mark.slow
def test_xla_on_one_side_is_named_as_xla_fusion_and_verified_off(tmp_path):
    """XLA auto-clustering in run B only: B's graph runs the step's ops inside clusters, the first op with equal
    inputs and a differing output is one of them, and with XLA off in both runs they agree."""
    result = run_program("harness.diverge", "--benchmark=digits_mlp", "--epochs=2", "--max_train_examples=300",
                         "--noaugment", "--b_env=TF_XLA_FLAGS=--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit",
                         "--verify", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "divergence.json").read_text())
    assert schema_errors(record) == []
    part = record["first_op"]
    assert part["in_xla_only_in"] == "b" and part["xla_clusters"]["a"] == 0 and part["xla_clusters"]["b"] > 0
    assert part["op"] in part["in_xla"] and part["inputs_equal"] and part["step"] == 0
    assert (part["cause"], part["remedy"]) == ("XLA fusion", "xla off")
    assert (f"Run B's graph differs: {len(part['in_xla'])} ops of run A's train step ran inside XLA cluster(s) in "
            "run B") in result.stdout
    assert ("--verify: with XLA off in both runs (TF_XLA_FLAGS empty), the runs agree: all 18 steps are bitwise "
            "identical.") in result.stdout
    assert record["verify"]["diverged"] is False
