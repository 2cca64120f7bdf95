"""Containers without a Docker engine: the Dockerfiles lint clean, make prints the right commands,
the locks pin every package by hash, and the entrypoint the images run works here."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_program

from harness.studies.records import read_records

BIN = Path(sys.executable).parent


def _make_n(*args: str) -> str:
    # -B: print every command as on a fresh clone, whatever this checkout has built.
    result = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_bench_gpu_builds_the_pinned_image_and_runs_it_on_all_gpus():
    commands = _make_n("bench", "GPU=1", "BENCHMARK=cifar10_cnn", "REPEATS=3")
    build = commands.index("docker build -f docker/gpu.Dockerfile -t tf-determinism-harness:gpu")
    run = commands.index("docker run --rm --gpus all")
    assert build < run
    assert f'-v "{REPO}/results:/results"' in commands
    assert "-e HARNESS_IMAGE=tf-determinism-harness:gpu" in commands
    assert "-e HARNESS_IMAGE_DIGEST=\"$(docker image inspect --format '{{.Id}}' tf-determinism-harness:gpu)\"" \
        in commands
    assert "bench --benchmark=cifar10_cnn --repeats=3 --output_dir=/results/cifar10_cnn" in commands


def test_make_bench_without_gpu_stays_local_and_image_takes_datasets():
    local = _make_n("bench")
    from harness.trial.config import DEFAULT_BENCHMARK

    # make bench and the programs' --benchmark default run the same study.
    assert "docker" not in local and f"-m harness.bench --benchmark={DEFAULT_BENCHMARK} " in local
    image = _make_n("image", "DATASETS=mnist,cifar10")
    assert "docker build -f docker/cpu.Dockerfile -t tf-determinism-harness:cpu --build-arg DATASETS=mnist,cifar10" \
        in image


def test_the_containers_doc_shows_what_make_bench_gpu_runs_and_the_images_default_to_the_default_study():
    from harness.trial.config import DEFAULT_BENCHMARK

    def joined(text):
        return " ".join(text.replace("\\\n", " ").split())

    made = joined(_make_n("bench", "GPU=1"))
    made = made[made.index("docker run"):].replace(str(REPO), "$PWD")
    doc = (REPO / "docs" / "containers.md").read_text()
    shown = joined(doc.split("`make bench GPU=1` runs", 1)[1].split("```sh", 1)[1].split("```", 1)[0])
    assert shown == made
    for flavour in ("cpu", "gpu"):
        dockerfile = (REPO / "docker" / f"{flavour}.Dockerfile").read_text()
        assert f'CMD ["--output_dir=/results/{DEFAULT_BENCHMARK}"]' in dockerfile, flavour


def test_the_entrypoint_runs_every_program_and_the_doc_names_each():
    """A program is a module under harness/ that starts through cli.run; the worker is the harness's own."""
    programs = {path.stem for path in (REPO / "harness").glob("*.py") if "cli.run(" in path.read_text()} - {"worker"}
    listed = re.search(r"^  ([\w|]+)\)$", (REPO / "docker" / "entrypoint.sh").read_text(), re.MULTILINE).group(1)
    assert set(listed.split("|")) == programs
    doc = (REPO / "docs" / "containers.md").read_text().split("entrypoint runs", 1)[1].split("Records carry")[0]
    assert set(re.findall(r"`(\w+)`", doc)) | {"report"} == programs  # report: `report --input_dir=...`


@pytest.mark.slow
def test_both_dockerfiles_pass_hadolint():
    result = subprocess.run([str(BIN / "hadolint"), "docker/cpu.Dockerfile", "docker/gpu.Dockerfile"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("flavour,base,tensorflow", [
    ("cpu", "python:3.12.8-slim-bookworm", "tensorflow-cpu==2.21.0"),
    # TF 2.21's GPU build was made with CUDA 12.5.1 (tf.sysconfig.get_build_info()).
    ("gpu", "nvidia/cuda:12.5.1-base-ubuntu24.04", "tensorflow==2.21.0"),
])
def test_images_pin_their_base_and_every_package_by_hash(flavour, base, tensorflow):
    dockerfile = (REPO / "docker" / f"{flavour}.Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={base}" in dockerfile and "FROM ${BASE_IMAGE}${BASE_DIGEST}" in dockerfile
    assert "--require-hashes" in dockerfile and re.search(r"^USER \d+$", dockerfile, re.M)
    lock = (REPO / "docker" / f"requirements-{flavour}.lock").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", lock, re.M)
    names = {name.lower() for name, _, _ in pins}
    assert tensorflow.split("==")[0] in names and any(f"{n}=={v}" == tensorflow for n, v, _ in pins)
    assert {"absl-py", "numpy", "tensorflow-datasets", "jsonschema", "scipy", "matplotlib"} <= names
    # Every requirement line of the lock is one of the hashed pins.
    assert len(pins) == len(re.findall(r"^[A-Za-z0-9_.-]+==", lock, re.M)) > 40
    if flavour == "gpu":
        assert {"nvidia-cudnn-cu12", "nvidia-cublas-cu12", "nvidia-cuda-runtime-cu12"} <= names


def _entrypoint(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO), **env_vars}
    return subprocess.run(["sh", str(REPO / "docker" / "entrypoint.sh"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_entrypoint_runs_bench_by_default_and_other_programs_by_name(small_study, tmp_path):
    bad = _entrypoint("--benchmark=nope")
    assert bad.returncode == 2 and "unknown benchmark 'nope'" in bad.stderr
    validated = _entrypoint("validate", str(small_study / "trials.jsonl"))
    assert validated.returncode == 0 and "all valid" in validated.stdout
    # As `make bench GPU=1` runs it: the image and its id go into every record.
    bench = _entrypoint("bench", "--conditions=control", "--repeats=1", "--epochs=1", "--max_train_examples=100",
                        f"--output_dir={tmp_path}", HARNESS_IMAGE="tf-determinism-harness:gpu",
                        HARNESS_IMAGE_DIGEST="sha256:" + "0" * 64)
    assert bench.returncode == 0, bench.stderr
    (record,) = read_records(tmp_path / "trials.jsonl")
    assert record["environment"]["container"] == {"image": "tf-determinism-harness:gpu",
                                                  "digest": "sha256:" + "0" * 64}


def test_the_kubernetes_job_runs_one_shard_per_pod_of_the_pinned_image():
    import yaml

    job = yaml.safe_load((REPO / "docker" / "k8s" / "study-job.yaml").read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    # Kubernetes sets JOB_COMPLETION_INDEX per pod; the shard count must match the completions.
    assert int(env["HARNESS_NUM_SHARDS"]) == spec["completions"]
    assert "@sha256:" in container["image"] and env["HARNESS_IMAGE_DIGEST"].startswith("sha256:")
    assert container["args"][0] == "bench" and any(a.startswith("--output_dir=gs://") for a in container["args"])
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_ray_job_runs_every_pod_on_one_pinned_image_with_a_gpu_per_trial():
    import shlex

    import yaml

    job = yaml.safe_load((REPO / "docker" / "k8s" / "ray-job.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"], *(group["template"] for group in cluster["workerGroupSpecs"])]
    images = {container["image"] for pod in pods for container in pod["spec"]["containers"]}
    assert len(images) == 1 and "@sha256:" in images.pop()  # nodes of one kind: their bits compare
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install .[ray])")
    assert cluster["rayVersion"] == ray.__version__  # the version the image's lock pins
    entrypoint = shlex.split(job["spec"]["entrypoint"])
    assert entrypoint[:3] == ["python", "-m", "harness.bench"]
    assert {"--executor=ray", "--ray_gpus_per_trial=1", "--ray_resources=study_gpu=0.001"} <= set(entrypoint)
    # The resource the trials ask for is one the GPU group's pods offer (ray start --resources, JSON in quotes).
    offered = json.loads(json.loads(cluster["workerGroupSpecs"][0]["rayStartParams"]["resources"]))
    assert offered == {"study_gpu": 1}
    lock = (REPO / "docker" / "requirements-gpu.lock").read_text()
    assert f"ray=={ray.__version__} " in lock
    # Every flag of the entrypoint is bench's, with a value it accepts (--helpfull parses without TensorFlow).
    checked = run_program("harness.bench", *entrypoint[3:], "--helpshort", timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_every_directory_of_package_data_is_a_package_so_the_install_warns_of_nothing_of_ours():
    """setuptools warns (80 lines each) when package data lives in a directory it does not count as a
    package: harness/data and harness/schema hold no modules, so discovery must be namespace-aware."""
    from setuptools.config.setupcfg import read_configuration

    options = read_configuration(REPO / "setup.cfg")["options"]
    packages = set(options["packages"])
    assert {"harness", "harness.data", "harness.schema", "benchmarks"} <= packages
    # The layers install too: an image's `pip install .` has every sub-package.
    assert {"harness.platform", "harness.trial", "harness.studies", "harness.analysis", "harness.tuning"} <= packages
    assert not any("__pycache__" in name for name in packages)
    for package in options["package_data"]:
        assert package in packages
