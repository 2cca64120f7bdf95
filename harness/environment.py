"""What produced a record: software, hardware, threads and settings.

Captured once per process (it cannot change within one) and copied into
every trial record, so a record read years later still says where it came from.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from typing import Any

import tensorflow as tf

from harness import __version__
from harness.determinism import op_determinism_enabled

# Variables that change what TF computes or how fast; recorded when set.
ENV_PREFIXES = ("TF_", "CUDA_", "NVIDIA_", "CUBLAS_", "XLA_", "OMP_", "KMP_", "MKL_", "HARNESS_")
NVIDIA_SMI_FIELDS = ("name", "driver_version", "memory.total", "compute_cap", "uuid")


@functools.lru_cache(maxsize=1)
def static_environment() -> dict[str, Any]:
    """The parts of the environment fixed for the life of the process."""
    return {
        "harness_version": __version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "tensorflow": {
            "version": tf.__version__,
            "git_version": tf.version.GIT_VERSION,
            "build_info": {k: _jsonable(v) for k, v in tf.sysconfig.get_build_info().items()},
        },
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count(),
                "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "gpus": gpus(),
        "container": {"image": os.environ.get("HARNESS_IMAGE"),
                      "digest": os.environ.get("HARNESS_IMAGE_DIGEST")},
        "env_vars": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)},
        # oneDNN is on by default on x86 Linux builds; only TF_ENABLE_ONEDNN_OPTS=0 turns it off.
        "onednn_enabled": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False"),
    }


def capture() -> dict[str, Any]:
    """The full environment of a trial starting now (static parts plus current switches)."""
    return {
        **static_environment(),
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "op_determinism": op_determinism_enabled(),
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict[str, Any]]:
    """Every GPU TF sees, with details from TF and, where present, nvidia-smi. None is an empty list."""
    devices = tf.config.list_physical_devices("GPU")
    smi = parse_nvidia_smi(_run_nvidia_smi()) if devices else []
    found = []
    for index, device in enumerate(devices):
        details = tf.config.experimental.get_device_details(device)
        entry = {"device": device.name, "name": details.get("device_name"),
                 "compute_capability": _jsonable(details.get("compute_capability"))}
        if index < len(smi):
            entry.update(smi[index])
        found.append(entry)
    return found


def _run_nvidia_smi() -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    query = ",".join(NVIDIA_SMI_FIELDS)
    try:
        return subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parses `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`."""
    rows = []
    for line in text.strip().splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(NVIDIA_SMI_FIELDS):
            continue
        name, driver, memory, capability, uuid = cells
        rows.append({
            "smi_name": name,
            "driver_version": driver,
            "memory_mib": int(memory) if re.fullmatch(r"\d+", memory) else None,
            "smi_compute_capability": capability,
            "uuid": uuid,
        })
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
