"""Every op of a traced step, its tensors fingerprinted: the ops read in creation order under their graph
names, the bits of training unchanged, and the runtime graph saying which ops really ran."""

import pytest

from harness.trial import op_trace
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial


@pytest.mark.slow  # two trials: about 15 s
def test_op_tracing_reads_every_op_and_keeps_the_bits():
    config = load_benchmark("digits_mlp", epochs=2, max_train_examples=300)
    with op_trace.runtime_graph() as runtime:
        traced = run_trial(config, SeedSet.from_base(0), trace=True, trace_ops=True)
    plain = run_trial(config, SeedSet.from_base(0))
    assert traced.fingerprints == plain.fingerprints  # one fingerprint op per tensor reads, computes nothing
    table, steps = traced.trace["op_table"], traced.trace["op_steps"]
    names = table["names"]
    # The step's arguments first, then the forward pass, the backward pass, the update, in creation order.
    assert names[:3] == ["x", "y", "step"]
    assert names.index("MatMul") < names.index("gradient_tape/MatMul/MatMul")
    assert table["types"][names.index("MatMul")] == "MatMul"
    assert steps.shape == (18, max(i for ids in table["outputs"] for i in ids) + 1, 8)
    # Without XLA, the step's MatMul runs as itself in the runtime graph, and no cluster does.
    ran = op_trace.ran(names, runtime)
    assert ran[names.index("MatMul")] and ran[names.index("gradient_tape/MatMul/MatMul")]
    assert op_trace.xla_clusters(runtime) == []
