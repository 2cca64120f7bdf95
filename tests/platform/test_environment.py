"""Environment capture: nvidia-smi output and TF build info as real machines print them; absence as absence."""

import collections
import json
import os

import pytest
from conftest import REPO, run_program

from harness.analysis.study_report import environment_rows
from harness.platform import environment

# Real `nvidia-smi --query-gpu=... --format=csv[,nounits]` outputs as published in public repositories
# and issue threads (the last from triton-inference-server/server#8070). Field order, units and
# extra fields vary; the parser reads columns by header name.
H100 = """name, driver_version, memory.total [MiB], compute_cap
NVIDIA H100 80GB HBM3, 580.82.07, 81559 MiB, 9.0
"""
TWO_L40S_WITH_EXTRA_FIELDS = """\
index, name, driver_version, memory.total [MiB], clocks.max.sm [MHz], clocks.max.memory [MHz]
0, NVIDIA L40S, 575.51.03, 46068 MiB, 2520 MHz, 9001 MHz
1, NVIDIA L40S, 575.51.03, 46068 MiB, 2520 MHz, 9001 MHz
"""
NOUNITS_RTX_3090 = """name, driver_version, memory.total [MiB], memory.free [MiB]
GeForce RTX 3090, 535.129.03, 24576, 24451
"""
COMPUTE_CAP_FIRST = """compute_cap, compute_mode, driver_version, name, index
7.0, Default, 570.86.15, NVIDIA TITAN V, 0
8.9, Default, 570.86.15, NVIDIA RTX 5880 Ada Generation, 1
"""
# What a driver older than 510 prints for a query naming compute_cap (huggingface/candle#733).
OLD_DRIVER_ERROR = 'Field "compute_cap" is not a valid field to query.\n'

# tf.sysconfig.get_build_info() of TensorFlow 2.21.0's Linux GPU wheel (its tensorflow/python/platform/build_info.py).
TF_2_21_GPU_BUILD_INFO = collections.OrderedDict([
    ("cpu_compiler", "clang"), ("cuda_compute_capabilities", ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"]),
    ("cuda_version", "12.5.1"), ("cudnn_version", "9"), ("is_cuda_build", True), ("is_rocm_build", False),
    ("is_tensorrt_build", False)])


def test_parses_a_single_h100_with_units():
    (gpu,) = environment.parse_nvidia_smi(H100)
    assert gpu == {"smi_index": None, "smi_name": "NVIDIA H100 80GB HBM3", "driver_version": "580.82.07",
                   "memory_mib": 81559, "smi_compute_capability": "9.0", "uuid": None}


def test_parses_several_gpus_with_fields_we_did_not_ask_for():
    gpus = environment.parse_nvidia_smi(TWO_L40S_WITH_EXTRA_FIELDS)
    assert [(g["smi_index"], g["smi_name"], g["memory_mib"]) for g in gpus] == [
        (0, "NVIDIA L40S", 46068), (1, "NVIDIA L40S", 46068)]
    assert all(g["smi_compute_capability"] is None for g in gpus)


@pytest.mark.parametrize("text,expected", [
    (NOUNITS_RTX_3090, [("GeForce RTX 3090", "535.129.03", 24576, None)]),
    (COMPUTE_CAP_FIRST, [("NVIDIA TITAN V", "570.86.15", None, "7.0"),
                         ("NVIDIA RTX 5880 Ada Generation", "570.86.15", None, "8.9")]),
])
def test_parses_any_field_order_with_or_without_units(text, expected):
    gpus = environment.parse_nvidia_smi(text)
    assert [(g["smi_name"], g["driver_version"], g["memory_mib"], g["smi_compute_capability"])
            for g in gpus] == expected


@pytest.mark.parametrize("text", ["", OLD_DRIVER_ERROR, "NVIDIA-SMI has failed because it couldn't communicate "
                                  "with the NVIDIA driver."])
def test_errors_and_absence_parse_to_no_gpus(text):
    assert environment.parse_nvidia_smi(text) == []


def test_values_nvidia_smi_cannot_give_are_recorded_as_none():
    (gpu,) = environment.parse_nvidia_smi("name, memory.total [MiB], uuid\nGRID T4-8Q, [N/A], [Not Supported]\n")
    assert gpu["smi_name"] == "GRID T4-8Q" and gpu["memory_mib"] is None and gpu["uuid"] is None


def test_a_gpu_build_info_is_recorded_and_shown():
    recorded = environment._jsonable(TF_2_21_GPU_BUILD_INFO)
    assert recorded["cuda_version"] == "12.5.1" and recorded["cudnn_version"] == "9"
    assert recorded["cuda_compute_capabilities"][-1] == "compute_90"
    rows = dict(environment_rows({"tensorflow": {"version": "2.21.0", "build_info": recorded},
                                  "gpus": [{"name": "NVIDIA H100 80GB HBM3", "compute_capability": [9, 0],
                                            "driver_version": "580.82.07"}]}))
    assert rows["built with CUDA / cuDNN"] == "12.5.1 / 9"
    assert rows["GPUs"] == "NVIDIA H100 80GB HBM3 (cc [9, 0], driver 580.82.07)"


def test_this_cpu_machine_records_absence_plainly():
    captured = environment.capture()
    assert captured["gpus"] == [] and captured["gpu_visible"] is False
    assert captured["tensorflow"]["build_info"]["is_cuda_build"] is False
    assert captured["cpu"]["model"] and captured["threads"].keys() == {"intra_op", "inter_op"}
    assert captured["container"] == {"image": None, "digest": None}


def test_onednn_is_recorded_as_tensorflow_decides_not_as_the_variables_absence_suggests():
    """Without TF_ENABLE_ONEDNN_OPTS, TensorFlow turns oneDNN on only on CPUs with AVX-512 VNNI/BF16, AVX-VNNI or
    AMX, and says so on import ("oneDNN custom operations are on"): the record must agree with TensorFlow (on an
    AVX2-only CPU the variable's absence used to be recorded as "on")."""
    import subprocess
    import sys

    code = ("import tensorflow\n"  # before the harness, whose import would hold back TF's start-up notices
            "from harness.platform.environment import onednn_enabled\n"
            "print(onednn_enabled())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    said_on = "oneDNN custom operations are on" in done.stderr
    assert done.stdout.strip() == str(said_on), (done.stdout, done.stderr[-2000:])


# Secrets people keep in their environment: Terraform's TF_ variables, and a harness-prefixed key.
SECRETS = {"TF_VAR_db_password": "hunter2", "TF_TOKEN_app_terraform_io": "tfe-token-4711",
           "TF_CLI_CONFIG_FILE": "/home/someone/.terraformrc", "HARNESS_API_KEY": "sk-live-0815",
           # Secrets inside values of harmless names: a URL's password, a registry login, a signed URL's token.
           "HARNESS_DB_URL": "postgres://u:pw-db-1234@db.example/x",
           "HARNESS_IMAGE": "user:pw-registry-5678@registry.example/img:1",
           "HARNESS_RESULTS": "https://store.example/r?token=tok-9012&sig=sig-3456"}


def test_only_variables_that_change_numerics_are_recorded_and_secrets_are_redacted():
    environ = {**SECRETS, "TF_ENABLE_ONEDNN_OPTS": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PATH": "/usr/bin",
               "AWS_SECRET_ACCESS_KEY": "aws-secret", "HARNESS_NUM_SHARDS": "4"}
    assert environment.recorded_env_vars(environ) == {
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "HARNESS_API_KEY": "<redacted>", "HARNESS_NUM_SHARDS": "4",
        "TF_ENABLE_ONEDNN_OPTS": "0", "HARNESS_DB_URL": "postgres://u:<redacted>@db.example/x",
        "HARNESS_IMAGE": "user:<redacted>@registry.example/img:1",
        "HARNESS_RESULTS": "https://store.example/r?token=<redacted>&sig=<redacted>"}


@pytest.mark.slow
def test_no_secret_reaches_records_summary_or_report(tmp_path):
    output_dir = tmp_path / "study"
    result = run_program("harness.bench", "--conditions=control", "--repeats=1", "--epochs=1",
                         "--max_train_examples=200", f"--output_dir={output_dir}", env_vars=SECRETS)
    assert result.returncode == 0, result.stderr
    assert run_program("harness.report", f"--input_dir={output_dir}").returncode == 0
    written = {path.name: path.read_text() for path in output_dir.rglob("*")
               if path.is_file() and path.suffix in (".jsonl", ".json", ".html", ".md")}
    assert {"trials.jsonl", "summary.json", "report.html", "report.md"} <= set(written)
    for name, text in written.items():
        for secret in ("hunter2", "tfe-token-4711", ".terraformrc", "sk-live-0815", "pw-db-1234", "pw-registry-5678",
                       "tok-9012", "sig-3456"):
            assert secret not in text, (name, secret)
    record = json.loads(written["trials.jsonl"].splitlines()[0])
    assert record["environment"]["env_vars"]["HARNESS_API_KEY"] == "<redacted>"
    assert record["environment"]["container"]["image"] == "user:<redacted>@registry.example/img:1"
    assert record["environment"]["env_vars"]["HARNESS_DB_URL"] == "postgres://u:<redacted>@db.example/x"


def test_the_docs_list_every_recorded_variable_and_the_baseline_holds_no_other():
    listed = (REPO / "docs" / "failures.md").read_text()
    for name in environment.RECORDED_ENV_VARS:
        assert f"| `{name}` |" in listed, name
    baseline = json.loads((REPO / "benchmarks/baselines/digits_mlp_ci.json").read_text())
    assert set(baseline["environment"]["env_vars"]) <= set(environment.RECORDED_ENV_VARS)
