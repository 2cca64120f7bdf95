"""The op scan: ops without deterministic GPU kernels are found in the traced train step, for any model."""

import pytest
from conftest import run_program, user_config

from harness.analysis import op_scan
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial


def test_scan_and_trace_work_on_a_user_model(user_files):
    from harness.analysis.divergence import compare
    from harness.analysis.op_scan import train_step_ops

    ops = train_step_ops(user_config(user_files))
    assert ops["MatMul"] >= 2 and any("Adam" in op or "AssignVariableOp" == op for op in ops)
    a = run_trial(user_config(user_files, epochs=1), SeedSet.from_base(0), trace=True)
    b = run_trial(user_config(user_files, epochs=1), SeedSet.from_base(0).replace(dropout=5), trace=True)
    found = compare(a.trace, b.trace)
    # Another dropout seed: the same initial weights, a different loss at the very first step.
    assert found["diverged"] and found["first_step"] == 0 and found["stage"] == "forward pass (loss)"


def _flagged(benchmark, **overrides):
    return {f["op"]: f for f in op_scan.scan(load_benchmark(benchmark, **overrides))["flagged"]}


def test_the_scan_flags_gather_and_segment_ops_of_the_embedding_model():
    flagged = _flagged("embedding")
    assert flagged["UnsortedSegmentSum"]["kind"] == "fixed" and flagged["UnsortedSegmentSum"]["since"] == "2.7"


def test_the_scan_flags_the_cnns_convolution_backprop():
    flagged = _flagged("digits_mlp", model="cnn", dropout_rate=0.25)
    assert {"Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput", "BiasAddGrad"} <= set(flagged)


def test_the_scan_stays_quiet_on_ops_without_known_issues():
    found = op_scan.scan(load_benchmark("random_regression"))
    assert found["flagged"] == [] and found["op_types"] > 10
    assert op_scan.summary_line(found) is None
    raises = _flagged("unimplemented_ops")["SparseTensorDenseMatMul"]
    assert raises["kind"] == "raises" and "dense matmul" in raises["alternative"]


@pytest.mark.slow
def test_a_study_warns_in_one_line_at_start_where_it_applies(tmp_path):
    """The warning is about GPUs: on this CPU-only machine it needs --scan_ops=on, and auto says nothing."""
    study = ["--benchmark=embedding", "--conditions=control", "--repeats=1", "--epochs=1", "--max_train_examples=100"]
    asked = run_program("harness.bench", *study, "--scan_ops=on", f"--output_dir={tmp_path / 'on'}")
    assert asked.returncode == 0, asked.stderr[-2000:]
    warnings = [line for line in asked.stderr.splitlines() if "op scan of embedding" in line]
    assert len(warnings) == 1 and "UnsortedSegmentSum" in warnings[0]
    auto = run_program("harness.bench", *study, f"--output_dir={tmp_path / 'auto'}")
    assert auto.returncode == 0 and "op scan of" not in auto.stderr
