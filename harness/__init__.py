"""A TensorFlow determinism and variance benchmark harness.

Trains small models with a hand-written `tf.function` loop under controlled
conditions and writes JSON records that say how much results vary, which
source of randomness causes it, and what deterministic kernels cost.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

from harness.version import __version__  # noqa: F401  (harness.__version__)

# TF's C++ INFO records as they reach stderr while TensorFlow is imported (the oneDNN notice, the CPU
# feature notice and its second line), and absl's note that precedes them.
_BANNER = re.compile(r"I\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\]|WARNING: All log messages before absl::InitializeLog\(\)"
                     r"|To enable the following instructions:")


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """TF's C++ start-up chatter buries the tables people read, and TF 2.21 prints it before its own log
    settings apply (TF_CPP_MIN_LOG_LEVEL does not silence it). So the import of `tensorflow` runs with
    stderr (fd 2) held in a file, and everything but those banner lines is written on afterwards:
    warnings and errors still show. `--verbosity=N` on a program, or TF_CPP_MIN_LOG_LEVEL=0, keeps them."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders do the finding
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            load = spec.loader.exec_module

            def exec_module(module) -> None:
                with _banners_dropped():
                    load(module)

            spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def _banners_dropped():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not _BANNER.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _wants_tensorflow_logs() -> bool:
    arguments = getattr(sys, "orig_argv", sys.argv)[1:]
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or any(
        arg.startswith(("--verbosity", "-v=")) or arg == "-v" for arg in arguments)


if "tensorflow" not in sys.modules and not _wants_tensorflow_logs():
    sys.meta_path.insert(0, _QuietTensorFlowImport())
    # The C++ INFO records TF writes once its log settings apply, here and in the processes it starts.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def __getattr__(name: str):
    """`harness.study(...)`, `harness.rerun(...)` and `harness.reeval(...)`, the Python API (harness/api.py),
    imported on first use: `import harness` stays light, and TensorFlow loads only when a study runs. (The
    programs `python -m harness.rerun` and `harness.reeval` are modules of the same names; importing them
    as modules in Python would hide these functions, so use the functions.)"""
    if name in ("study", "rerun", "reeval"):
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
