"""The op scan: which ops of a config's train step are known GPU determinism problems (`known_ops`).

Traces the real train step (forward, gradients, optimizer) without running it
and lists its op types; `python -m harness.scan` prints it, and studies run it
at start and warn in one line.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from absl import logging

from harness.platform.known_ops import KNOWN_OPS
from harness.table import format_table
from harness.trial.config import TrialConfig


def train_step_ops(config: TrialConfig) -> Counter:
    """Op types (with counts) of one traced train step of this config, gradients and update included."""
    import tensorflow as tf

    from harness.trial.datasets import dataset_of
    from harness.trial.seeds import SeedSet
    from harness.trial.train import build_trainable, graph_op_types, make_train_loop

    dataset = dataset_of(config)
    loop = make_train_loop(build_trainable(config, dataset, SeedSet.from_base(0)), config.xla)
    label_spec = tf.TensorSpec([config.batch_size, *dataset.train_y.shape[1:]], tf.as_dtype(dataset.train_y.dtype))
    input_spec = tf.nest.map_structure(
        lambda x: tf.TensorSpec([config.batch_size, *x.shape[1:]], tf.as_dtype(x.dtype)), dataset.train_x)
    return graph_op_types(loop.train_step.get_concrete_function(input_spec, label_spec,
                                                                tf.TensorSpec([], tf.int64)).graph)


def scan(config: TrialConfig) -> dict[str, Any]:
    """The flagged ops of a config's train step, by kind."""
    import tensorflow as tf

    ops = train_step_ops(config)
    installed = tuple(int(p) for p in tf.__version__.split(".")[:2])
    flagged = []
    for op_type, count in sorted(ops.items()):
        known = KNOWN_OPS.get(op_type)
        if known is None:
            continue
        fixed_here = known.since is not None and installed >= tuple(int(p) for p in known.since.split("."))
        flagged.append({"op": op_type, "count": count, "kind": known.kind, "what": known.what,
                        "since": known.since, "fixed_in_installed_tf": fixed_here,
                        "alternative": known.alternative})
    return {"benchmark": config.benchmark, "model": config.model, "op_types": len(ops), "flagged": flagged}


def summary_line(found: dict[str, Any]) -> str | None:
    """One line for the start of a study, or None when no op of the train step is known to be a problem."""
    differ = [f["op"] for f in found["flagged"] if f["kind"] == "fixed"]
    raises = [f["op"] for f in found["flagged"] if f["kind"] == "raises"]
    parts = []
    if differ:
        parts.append(f"on a GPU without op determinism {', '.join(differ)} make `kernels` differ from `control`")
    if raises:
        parts.append(f"with op determinism on a GPU {', '.join(raises)} raise UnimplementedError")
    return f"op scan of {found['benchmark']}: " + "; ".join(parts) + " (python -m harness.scan)" if parts else None


def format_scan(found: dict[str, Any]) -> str:
    lines = [f"{found['benchmark']} ({found['model']}): {found['op_types']} op types in one traced train step"]
    if not found["flagged"]:
        lines.append("No op with a known GPU determinism issue.")
        return "\n".join(lines)
    rows = [[f["op"], f["count"], "nondeterministic on GPU" if f["kind"] == "fixed" else "raises under determinism",
             f["what"], f"deterministic with op determinism since TF {f['since']}" if f["kind"] == "fixed"
             else f"instead: {f['alternative']}"] for f in found["flagged"]]
    lines.append(format_table(["op", "count", "on a GPU", "what", "remedy"], rows))
    sentence = summary_line(found).split(": ", 1)[1].replace(" (python -m harness.scan)", "")
    lines.append(sentence[0].upper() + sentence[1:] + ".")
    return "\n".join(lines)


def warn_at_study_start(config: TrialConfig, when: str = "auto") -> None:
    """One warning line naming the train step's ops with known GPU determinism issues.

    `when`: "on" always scans; "off" never; "auto" scans where the warning applies, with a GPU
    visible: on a CPU those ops are deterministic, and the line would only be noise.
    """
    import tensorflow as tf

    if when == "off" or (when == "auto" and not tf.config.list_physical_devices("GPU")):
        return
    try:
        line = summary_line(scan(config))
    except Exception as error:  # A scan must never stop a study; say why it was skipped.
        logging.warning("op scan skipped: %s", error)
        return
    if line:
        logging.warning("%s", line)
