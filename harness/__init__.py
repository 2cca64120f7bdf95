"""A TensorFlow determinism and variance benchmark harness.

Trains small models with a hand-written `tf.function` loop under controlled
conditions and writes JSON records that say how much results vary, which
source of randomness causes it, and what deterministic kernels cost.
"""

import os

__version__ = "0.1.0"

# TF's C++ start-up chatter (CPU features, oneDNN notice) buries the tables
# people read; warnings and errors still show. Set before anything imports TF.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def __getattr__(name: str):
    """`harness.study(...)`, the Python API (harness/api.py), imported on first use: `import harness`
    stays light, and TensorFlow loads only when a study runs."""
    if name == "study":
        from harness.api import study

        return study
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
