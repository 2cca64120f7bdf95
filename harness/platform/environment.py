"""What produced a record: software, hardware, threads and settings.

Captured once per process (it cannot change within one) and copied into
every trial record, so a record read years later still says where it came from.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from harness.platform.determinism import op_determinism_enabled
from harness.redaction import redact, redact_text
from harness.version import __version__

# The environment variables a record keeps, when set, with why each matters: they change what TF
# computes (the bits) or how many threads compute it. Nothing else is recorded: records are shared
# and committed, and a prefix would catch secrets (TF_ is also Terraform's: TF_VAR_db_password,
# TF_TOKEN_app_terraform_io). docs/failures.md lists the same names (a test checks).
RECORDED_ENV_VARS = {
    "TF_ENABLE_ONEDNN_OPTS": "oneDNN kernels on or off (changes the bits on CPU)",
    "TF_DETERMINISTIC_OPS": "op determinism, the environment switch of older TF",
    "TF_CUDNN_DETERMINISTIC": "deterministic cuDNN algorithms",
    "TF_XLA_FLAGS": "XLA auto-clustering and its options (XLA changes the bits)",
    "XLA_FLAGS": "XLA compiler options",
    "TF_NUM_INTRAOP_THREADS": "TF's intra-op thread pool",
    "TF_NUM_INTEROP_THREADS": "TF's inter-op thread pool",
    "TF_GPU_ALLOCATOR": "the GPU memory allocator (free memory can change cuDNN's algorithm choice)",
    "TF_FORCE_GPU_ALLOW_GROWTH": "GPU memory growth (as above)",
    "NVIDIA_TF32_OVERRIDE": "TF32 matmuls and convolutions on Ampere and newer GPUs (precision)",
    "CUBLAS_WORKSPACE_CONFIG": "cuBLAS workspace, which deterministic cuBLAS needs",
    "CUDA_VISIBLE_DEVICES": "which GPUs the process sees",
    "OMP_NUM_THREADS": "OpenMP threads (oneDNN's)",
    "KMP_AFFINITY": "OpenMP thread affinity",
    "KMP_BLOCKTIME": "OpenMP threads' spin time",
    "KMP_HW_SUBSET": "the cores OpenMP uses",
    "MKL_NUM_THREADS": "MKL threads",
    "MKL_DYNAMIC": "MKL's dynamic thread count",
    "TF_USE_LEGACY_KERAS": "Keras 2 (tf_keras) instead of Keras 3 for a user's model",
    "KERAS_BACKEND": "Keras 3's backend for a user's model",
}
# The recorded variables that cannot change a trial's bits: where threads run and how long they spin
# (KMP_AFFINITY, KMP_BLOCKTIME), and which of the GPUs (the GPUs' names are compared instead).
# TF_ENABLE_ONEDNN_OPTS is compared as "oneDNN", which is what it means (unset and 1 are both on).
SPEED_ONLY_ENV_VARS = frozenset({"KMP_AFFINITY", "KMP_BLOCKTIME", "CUDA_VISIBLE_DEVICES", "TF_ENABLE_ONEDNN_OPTS"})
# Every setting that can change a trial's bits, by the name a sentence gives it, and where a captured
# environment holds it. Trials whose settings differ are not reruns of one another: a resumed study,
# a rerun or a re-evaluation compares each (studies/study_runner.refuse_other_environments).
BIT_SETTINGS: dict[str, tuple[str, ...]] = {
    "TensorFlow": ("tensorflow", "version"),
    "TensorFlow build": ("tensorflow", "git_version"),
    "Keras": ("keras",),
    "CPU": ("cpu", "model"),
    # Which vector instructions the CPU has decides which kernels oneDNN and Eigen pick.
    "CPU instruction sets": ("cpu", "instruction_sets"),
    "GPUs": ("gpus",),
    "oneDNN": ("onednn_enabled",),
    "container image": ("container", "digest"),
    # The pools the trials ran with: the bits of a sum depend on how it is split across threads.
    "intra-op threads": ("threads", "intra_op"),
    "inter-op threads": ("threads", "inter_op"),
    **{name: ("env_vars", name) for name in RECORDED_ENV_VARS if name not in SPEED_ONLY_ENV_VARS},
}
# The settings a condition changes itself (its environment variables, its config's thread pools), which
# differ between its trials and control's by design.
SETTINGS_OF_CONDITION_CHANGES = {"TF_ENABLE_ONEDNN_OPTS": "oneDNN",
                                 "intra_op_threads": "intra-op threads",
                                 "inter_op_threads": "inter-op threads"}
THREAD_SETTINGS = (SETTINGS_OF_CONDITION_CHANGES["intra_op_threads"], SETTINGS_OF_CONDITION_CHANGES["inter_op_threads"])
# /proc/cpuinfo flags that select kernels (vector widths, fused multiply-add, AMX, VNNI, half floats).
_KERNEL_CPU_FLAGS = re.compile(r"(sse4_[12]|avx.*|fma|f16c|amx.*|.*vnni.*|bf16)")
# The harness's own settings (HARNESS_IMAGE, HARNESS_NUM_SHARDS, ...). Even a recorded variable is written
# redacted when its name says it holds a secret, and any secret inside a value is (harness/redaction.py).
RECORDED_ENV_PREFIX = "HARNESS_"
# Queried with a header row and parsed by column name, so any field order (and
# a driver that lacks a field) parses. compute_cap needs driver 510 or newer.
NVIDIA_SMI_FIELDS = ("index", "name", "driver_version", "memory.total", "compute_cap", "uuid")


@functools.lru_cache(maxsize=1)
def static_environment() -> dict[str, Any]:
    """The parts of the environment fixed for the life of the process."""
    import tensorflow as tf  # here, not with the module: a program's --help imports it

    return {
        "harness_version": __version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        # Which machine: a study on many (a Ray cluster, shards) says where each trial ran.
        "host": socket.gethostname(),
        "tensorflow": {
            "version": tf.__version__,
            "git_version": tf.version.GIT_VERSION,
            "build_info": {k: _jsonable(v) for k, v in tf.sysconfig.get_build_info().items()},
        },
        # A user's Keras model trains through Keras layers, losses and optimizers: their version changes bits.
        "keras": _package_version("keras"),
        "cpu": {"model": cpu_model(), "instruction_sets": cpu_instruction_sets(), "logical_cores": os.cpu_count(),
                "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "gpus": gpus(),
        # Absence is recorded as absence: a CPU-only build, or a CUDA build that found no GPU.
        "gpu_visible": bool(tf.config.list_physical_devices("GPU")),
        "nvidia_smi": shutil.which("nvidia-smi") is not None,
        "container": {"image": redact_text(os.environ.get("HARNESS_IMAGE") or "") or None,
                      "digest": os.environ.get("HARNESS_IMAGE_DIGEST")},
        "env_vars": recorded_env_vars(os.environ),
        "onednn_enabled": onednn_enabled(),
    }


def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN kernels are on in this process, as TensorFlow itself decides: by
    TF_ENABLE_ONEDNN_OPTS where it is set, and otherwise on only on CPUs with AVX-512 VNNI or BF16, AVX-VNNI or
    AMX (an AVX2-only CPU runs without them). The variable alone would say "on" there, wrongly."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # TF's own test (tf.test uses it)

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow without it: the variable, and TF's x86 default
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") not in ("0", "false", "False")


def bit_identity(environment: dict[str, Any]) -> dict[str, str]:
    """Every BIT_SETTINGS entry of a captured environment, as a sentence shows it: trials whose identities
    differ are not reruns of one another (a resumed study must not mix them)."""
    return {name: _shown(environment, path) for name, path in BIT_SETTINGS.items()}


def _shown(environment: dict[str, Any], path: tuple[str, ...]) -> str:
    value: Any = environment
    for depth, key in enumerate(path):
        if not isinstance(value, dict) or key not in value:
            # A variable the record's env_vars lacks was unset; any other missing part was not recorded
            # (a record of an older harness), which is not the same as any value now.
            return "unset" if path[0] == "env_vars" and depth == 1 and isinstance(value, dict) else "not recorded"
        value = value[key]
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(str(item.get("name") if isinstance(item, dict) else item) for item in value) or "none"
    return "none" if value is None else str(value)


def settings_changed_by(env_var_names: Iterable[str], config_keys: Iterable[str]) -> set[str]:
    """The BIT_SETTINGS a condition changes by setting these variables and config fields."""
    return {SETTINGS_OF_CONDITION_CHANGES.get(name, name) for name in (*env_var_names, *config_keys)}


def recorded_env_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of `environ` a record keeps (RECORDED_ENV_VARS and HARNESS_*), secrets redacted: a variable
    whose name says it holds one, and any inside a value (a URL's password, a token)."""
    return {name: redact(value, name) for name, value in sorted(environ.items())
            if name in RECORDED_ENV_VARS or name.startswith(RECORDED_ENV_PREFIX)}


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def capture() -> dict[str, Any]:
    """The full environment of a trial starting now (static parts plus current switches)."""
    import tensorflow as tf

    return {
        **static_environment(),
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "op_determinism": op_determinism_enabled(),
    }


def cpu_instruction_sets() -> str | None:
    """The CPU's kernel-selecting instruction set flags (avx2 avx512f fma ...), sorted; None where
    /proc/cpuinfo does not say (another OS)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return " ".join(sorted(f for f in line.split(":", 1)[1].split() if _KERNEL_CPU_FLAGS.fullmatch(f)))
    except OSError:
        pass
    return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def last_level_cache_bytes(cache_dir: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The size of the CPU's largest cache (L3 on most machines) as Linux's sysfs gives it; None where
    sysfs does not say (another OS, a container that hides it)."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    sizes = []
    try:
        entries = sorted(os.listdir(cache_dir))
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(cache_dir, entry, "size")) as file:
                text = file.read().strip()
        except OSError:
            continue
        match = re.fullmatch(r"(\d+)([KMG]?)", text)
        if match:
            sizes.append(int(match.group(1)) * units.get(match.group(2), 1))
    return max(sizes) if sizes else None


def gpus() -> list[dict[str, Any]]:
    """Every GPU TF sees, with details from TF and, where present, nvidia-smi. None is an empty list."""
    import tensorflow as tf

    devices = tf.config.list_physical_devices("GPU")
    smi = parse_nvidia_smi(run_nvidia_smi()) if devices else []
    found = []
    for index, device in enumerate(devices):
        details = tf.config.experimental.get_device_details(device)
        entry = {"device": device.name, "name": details.get("device_name"),
                 "compute_capability": _jsonable(details.get("compute_capability"))}
        if index < len(smi):
            entry.update(smi[index])
        found.append(entry)
    return found


def run_nvidia_smi() -> str:
    """`nvidia-smi --query-gpu` output with a header row; "" where nvidia-smi is absent or fails.

    Drivers older than 510 reject the whole query when it names compute_cap, so
    it is asked again without it (TF still reports the compute capability).
    """
    if shutil.which("nvidia-smi") is None:
        return ""
    for fields in (NVIDIA_SMI_FIELDS, tuple(f for f in NVIDIA_SMI_FIELDS if f != "compute_cap")):
        try:
            return subprocess.run(
                ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,nounits"],
                capture_output=True, text=True, timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            continue
    return ""


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=... --format=csv[,nounits]` output (header row first), by column name.

    Values nvidia-smi cannot give ("[N/A]", "[Not Supported]") are recorded as None.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines or "," not in lines[0]:
        return []
    # "memory.total [MiB]" -> "memory.total": units go with csv headers, nounits or not.
    header = [re.sub(r"\s*\[.*\]$", "", cell.strip()) for cell in lines[0].split(",")]
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(header):
            continue
        values = {name: (None if value.startswith("[") else value) for name, value in zip(header, cells, strict=True)}
        memory = values.get("memory.total")
        rows.append({
            "smi_index": int(values["index"]) if (values.get("index") or "").isdigit() else None,
            "smi_name": values.get("name"),
            "driver_version": values.get("driver_version"),
            "memory_mib": int(re.sub(r"\s*MiB$", "", memory)) if memory and re.fullmatch(r"\d+(\s*MiB)?", memory)
            else None,
            "smi_compute_capability": values.get("compute_cap"),
            "uuid": values.get("uuid"),
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
