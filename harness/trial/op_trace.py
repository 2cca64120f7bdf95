"""Every op of a traced train step, its inputs and outputs fingerprinted: where inside the step two runs part.

`harness.diverge` first names the step and layer where two runs part (`layer_trace`); then it runs each side
again with this capture to name the op. At the end of tracing the step, before anything of its own, it
reads the step's graph: every op (its unique name, its type, its input and output tensors), in the order the
ops were created (a topological order of the step). The step then also returns an 8-byte `tf.fingerprint` of
every distinct numeric tensor among them (a graph rewrite: one more op per tensor), so that each op's inputs
and outputs can be compared across runs, step by step. Ops inside a function the step calls (a `tf.cond`
branch, a nested `tf.function`) are not read one by one: the op that calls them is.

A second record says which of those ops the runtime really ran (`runtime_graph`): TensorFlow's own
optimized, partitioned graph of the train loop, as `tf.summary.trace_on(graph=True)` collects it. XLA
auto-clustering (`TF_XLA_FLAGS=--tf_xla_auto_jit=2`) replaces the ops it compiles by `_XlaCompile`/`_XlaRun`
ops there, so an op of the step that a run's runtime graph lacks, beside XLA clusters, ran inside one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from tensorflow.python.eager import context

# The runtime's op types that run an XLA cluster (auto-clustering's pair, and the older single launch op).
XLA_RUN_OP_TYPES = ("_XlaRun", "XlaLaunch")
# The Python function whose graph the ops are recorded in: `train.make_train_loop`'s traced step.
STEP_FUNCTION = "traced_step"


class OpCalls:
    """The ops of one traced train step's own graph, in the order they were created, and their tensors."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.types: list[str] = []
        self.inputs: list[list[int]] = []  # per op, the indices (in `tensors`) of its numeric inputs
        self.outputs: list[list[int]] = []  # and of its numeric outputs
        self.tensors: list[tf.Tensor] = []
        self._index: dict[Any, int] = {}

    def read(self, graph: Any) -> None:
        """Records every op `graph` (the step's, while it is traced) holds now, in creation order."""
        for op in graph.get_operations():
            self.names.append(op.name)
            self.types.append(op.type)
            self.inputs.append(self._indices(op.inputs))
            self.outputs.append(self._indices(op.outputs))

    def _indices(self, tensors: Any) -> list[int]:
        found = []
        for tensor in tensors:
            if tensor.dtype in (tf.resource, tf.variant):
                continue  # a handle, not a value
            key = tensor.ref()
            if key not in self._index:
                self._index[key] = len(self.tensors)
                self.tensors.append(tensor)
            found.append(self._index[key])
        return found

    def fingerprints(self) -> tf.Tensor:
        """[tensors, 8] uint8: each recorded tensor's farmhash64 fingerprint, computed in the step's graph."""
        rows = [tf.fingerprint(tf.reshape(tf.cast(t, tf.uint8) if t.dtype == tf.bool else t, [1, -1]))[0]
                for t in self.tensors]
        return tf.stack(rows) if rows else tf.zeros([0, 8], tf.uint8)

    def table(self) -> dict[str, list]:
        """The ops as plain lists (what a trace file keeps): names, types, input and output tensor indices."""
        return {"names": self.names, "types": self.types, "inputs": self.inputs, "outputs": self.outputs}


@contextlib.contextmanager
def runtime_graph() -> Iterator[dict[str, list[str]]]:
    """Collects, while inside, the optimized graphs the runtime runs; on exit, fills the yielded dict with the
    train loop's nodes (`names`, `types`): the partition graphs of the function that calls the traced step."""
    found: dict[str, list[str]] = {"names": [], "types": []}
    context.context().enable_graph_collection()
    try:
        yield found
    finally:
        metadata = context.context().export_run_metadata()
        context.context().disable_graph_collection()
        for graphs in metadata.function_graphs if metadata is not None else []:
            called = [f.signature.name for f in graphs.pre_optimization_graph.library.function]
            if not any(name.startswith(f"__inference_{STEP_FUNCTION}_") for name in called):
                continue
            for partition in graphs.partition_graphs:
                found["names"] += [node.name for node in partition.node]
                found["types"] += [node.op for node in partition.node]


def ran(op_names: list[str], runtime: dict[str, list[str]]) -> list[bool]:
    """Per recorded op, whether the runtime graph holds it: the traced step is inlined into the loop, so its
    ops appear under the call's name (`while/body/_1/.../StatefulPartitionedCall/dense1/MatMul`)."""
    inlined = {name.split("PartitionedCall/", 1)[1] for name in runtime["names"] if "PartitionedCall/" in name}
    return [name in inlined for name in op_names]


def xla_clusters(runtime: dict[str, list[str]]) -> list[str]:
    """The XLA clusters the runtime graph runs (`cluster_0_1`), one name each."""
    return sorted({name.split("/")[0] for name, kind in zip(runtime["names"], runtime["types"], strict=True)
                   if kind in XLA_RUN_OP_TYPES})
