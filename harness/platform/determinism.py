"""Implementation-level switches: op determinism and thread pools.

Op determinism can be switched per trial inside one process (TF keeps it as
a process-wide flag read when kernels run), which is what lets a study run
deterministic and nondeterministic trials interleaved in one process. Thread
pool sizes cannot: TF fixes them when its runtime starts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from harness.errors import UsageError

if TYPE_CHECKING:
    import tensorflow as tf

# TensorFlow is imported where a switch is used, not with this module: a program's --help imports it and
# must not wait for TensorFlow (tests/programs/test_help.py).


def _tf_config():
    """TF's framework config: the public API only has enable_op_determinism; the module it comes from
    also has the switch back and the getter, which studies need to interleave."""
    from tensorflow.python.framework import config as tf_config

    return tf_config


def set_op_determinism(enabled: bool) -> None:
    import tensorflow as tf

    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        _tf_config().disable_op_determinism()


def op_determinism_enabled() -> bool:
    return bool(_tf_config().is_op_determinism_enabled())


def set_thread_pools(intra_op_threads: int, inter_op_threads: int) -> None:
    """Sizes TF's thread pools (0 = TF's default); only possible before TF's runtime starts."""
    import tensorflow as tf

    current = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    if current == (intra_op_threads, inter_op_threads):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:
        raise UsageError(
            f"thread pools are already fixed at intra={current[0]}, inter={current[1]} in this "
            f"process; a trial with intra={intra_op_threads}, inter={inter_op_threads} needs a "
            "fresh process."
        ) from None


def explain_op_error(error: tf.errors.OpError) -> tuple[str | None, str]:
    """(op name, one-line reason) from a TF op error, e.g. an op with no deterministic kernel.

    Errors raised inside a `tf.function` start with "Graph execution error:" and
    a Python traceback; the op is named in "[[{{node NAME}}]]" or "Detected at
    node NAME", and the kernel's own sentence is the line that says why.
    """
    text = error.message or str(error)
    match = re.search(r"\{\{node ([^}]+)\}\}", text) or re.search(r"Detected at node '?([\w./-]+)", text)
    op = match.group(1) if match else (error.op.name if getattr(error, "op", None) is not None else None)
    # The kernel's own lines: not the header, not the traceback of where the op was defined.
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.strip().startswith(("Graph execution error", "File ", "Detected at", "[[",
                                              "<stack traces unavailable>", "The op is created at"))]
    reason = next((line for line in lines if "determinis" in line.lower()), lines[0] if lines else
                  type(error).__name__)
    reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", reason)
    reason = re.sub(r"\s*\[\[.*$", "", reason).rstrip(".")
    return op, reason
