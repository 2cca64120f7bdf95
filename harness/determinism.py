"""Implementation-level switches: op determinism and thread pools.

Op determinism can be switched per trial inside one process (TF keeps it as
a process-wide flag read when kernels run), which is what lets a study run
deterministic and nondeterministic trials interleaved in one process. Thread
pool sizes cannot: TF fixes them when its runtime starts.
"""

from __future__ import annotations

import tensorflow as tf

# The public API only has enable_op_determinism; the module it comes from
# also has the switch back and the getter, which studies need to interleave.
from tensorflow.python.framework import config as tf_config

from harness.errors import UsageError


def set_op_determinism(enabled: bool) -> None:
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


def op_determinism_enabled() -> bool:
    return bool(tf_config.is_op_determinism_enabled())


def set_thread_pools(intra_op_threads: int, inter_op_threads: int) -> None:
    """Sizes TF's thread pools (0 = TF's default); only possible before TF's runtime starts."""
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
