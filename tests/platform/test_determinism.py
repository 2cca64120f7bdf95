"""Op determinism: an op with no deterministic kernel fails its trial with a status naming the op; the study goes on."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf
from conftest import REPO

from harness.platform.determinism import explain_op_error
from harness.studies.records import schema_errors

# CPUs have no op that lacks a deterministic kernel, so this study stands in a CPU kernel that
# really raises UnimplementedError (depthwise convolution in NCHW layout, with oneDNN off) exactly
# where a GPU raises one for SparseTensorDenseMatMul: in the `unimplemented_ops` model's first
# layer, when op determinism is on. Everything else is the real study code.
STUDY = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from harness.platform import determinism, environment
    from harness.studies import conditions, study_runner
    from harness.trial import models
    from harness.trial.config import load_benchmark
    from harness.trial.seeds import SeedSet
    from harness.analysis.summary import build_summary

    real_first_layer = models.SparseMLP._first_layer

    def first_layer(self, x):
        out = real_first_layer(self, x)
        if determinism.op_determinism_enabled():  # decided when the train step is traced
            probe = tf.nn.depthwise_conv2d(tf.reshape(x[:, :1], [-1, 1, 1, 1]), tf.ones([1, 1, 1, 1]),
                                           [1, 1, 1, 1], "SAME", data_format="NCHW")
            out += 0.0 * tf.reduce_sum(probe)
        return out

    models.SparseMLP._first_layer = first_layer
    base, seeds = load_benchmark("unimplemented_ops", epochs=1, max_train_examples=200), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("control,kernels,init,all")
    specs = study_runner.plan(base, 0, seeds, chosen, 2, "unimplemented", replicas=2)
    study_runner.execute(specs, __import__("pathlib").Path(sys.argv[1]))
    records = study_runner.study_records(specs, __import__("pathlib").Path(sys.argv[1]))
    summary = build_summary(study_id="unimplemented", base_config=base.as_dict(), base_seeds=seeds.as_dict(),
                            conditions=chosen, repeats=2, records=records, environment=environment.capture(),
                            wall_s=None, directory=__import__("pathlib").Path(sys.argv[1]))
    print(json.dumps({"records": records, "summary": summary}))
""")


@pytest.mark.slow
def test_a_study_records_ops_without_deterministic_kernels_and_completes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run([sys.executable, "-c", STUDY, str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    by_condition = {}
    for record in out["records"]:
        assert schema_errors(record) == []
        by_condition.setdefault(record["condition"], []).append(record["status"])
    # Op determinism on: every trial fails, naming the op and why.
    for condition in ("control", "init"):
        for status in by_condition[condition]:
            assert status["code"] == "nondeterministic_op" and status["op"] == "depthwise"
            assert status["message"].startswith("depthwise has no deterministic kernel here: Depthwise convolution")
    # Op determinism off: the same model trains, and the study summarizes both.
    assert [s["code"] for c in ("kernels", "all") for s in by_condition[c]] == ["ok"] * 4
    # The pairs trained as replica groups; a group that failed trained its trials alone, each its own status.
    paths = {(r["condition"], (r["outputs"].get("vectorized") or {}).get("path")) for r in out["records"]}
    assert paths == {("control", None), ("init", None), ("kernels", "grouped"), ("all", "grouped")}
    rows = {row["name"]: row for row in out["summary"]["conditions"]}
    assert rows["control"]["failures"] == {"nondeterministic_op": 2} and rows["control"]["n_ok"] == 0
    assert rows["kernels"]["n_ok"] == 2 and schema_errors(out["summary"]) == []


def test_op_errors_from_a_tf_function_name_the_node():
    @tf.function
    def step(x, indices):
        return tf.gather(x, indices)

    try:
        step(tf.ones([2]), tf.constant([5]))
    except tf.errors.InvalidArgumentError as error:
        assert explain_op_error(error) == ("GatherV2", "indices[0] = 5 is not in [0, 2)")
    else:
        raise AssertionError("an out-of-range gather on CPU raises")
