"""Studies on a real two-node Ray cluster on this machine (`--executor=ray`): the same records and bits as a
local run, a resume across executors without duplicates, a node killed mid-study without a lost or doubled
trial, and bad addresses in one sentence."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, run_program

from harness.studies.records import read_records

ray_cluster_utils = pytest.importorskip("ray.cluster_utils", reason="ray is not installed (pip install .[ray])")

SMALL = ["--benchmark=digits_mlp", "--epochs=1", "--max_train_examples=200", "--cost_blocks=0"]
# Every way a study runs a trial: replica groups (control, init), a condition in its own environment
# variable (env:onednn), one at a time (--replicas=1 below).
CONDITIONS = "--conditions=control,init,env:onednn=1"


@pytest.fixture
def cluster():
    """A head node and a second node, each a separate raylet with one CPU, on the loopback; each offers a custom
    resource naming its kind (kind_a, kind_b), as GPU models would."""
    # Workers at the tests' own priority, not Ray's nice 15 (docs/scale-out.md).
    made = ray_cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {"kind_a": 1}, "_system_config": {"worker_niceness": 0}})
    made.add_node(num_cpus=1, resources={"kind_b": 1})
    made.wait_for_nodes()
    yield made
    made.shutdown()


def _bench_until_a_record(args, trials):
    """`harness.bench args` started, once `trials` holds its first record (five minutes at most)."""
    driver = subprocess.Popen([sys.executable, "-m", "harness.bench", *args], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not trials.exists() or not trials.read_bytes().count(b"\n")):
        time.sleep(0.2)
    return driver


def _prints(directory):
    return {(r["condition"], r["repeat"]): r["fingerprints"] for r in read_records(directory / "trials.jsonl")}


@pytest.mark.slow
def test_a_study_on_ray_records_the_bits_of_a_local_run_and_resumes_a_local_one(cluster, tmp_path):
    local = run_program("harness.bench", *SMALL, CONDITIONS, "--repeats=2", f"--output_dir={tmp_path / 'local'}")
    assert local.returncode == 0, local.stderr
    # Half the study here, the rest on the cluster: the trials recorded here are not run again.
    half = run_program("harness.bench", *SMALL, "--conditions=control", "--repeats=2",
                       f"--output_dir={tmp_path / 'ray'}")
    assert half.returncode == 0, half.stderr
    on_ray = run_program("harness.bench", *SMALL, CONDITIONS, "--repeats=2", "--executor=ray",
                         f"--ray_address={cluster.address}", f"--output_dir={tmp_path / 'ray'}")
    assert on_ray.returncode == 0, on_ray.stderr
    assert "4 trial(s) ran now, 2 already recorded" in on_ray.stdout
    records = read_records(tmp_path / "ray" / "trials.jsonl")
    assert len(records) == 6 and len({r["trial_key"] for r in records}) == 6
    assert _prints(tmp_path / "ray") == _prints(tmp_path / "local")
    # Made where they trained: env:onednn=1's records say oneDNN was on in their Ray worker.
    assert {r["environment"]["onednn_enabled"] for r in records if r["condition"] == "env:onednn=1"} == {True}
    # The variable that names a task's pool of Ray workers is the harness's, not a setting of the user's.
    assert not [r for r in records if "HARNESS_RAY_THREAD_POOLS" in r["environment"].get("env_vars", {})]
    assert run_program("harness.validate", str(tmp_path / "ray" / "trials.jsonl")).returncode == 0
    local_summary = json.loads((tmp_path / "local" / "summary.json").read_text())
    ray_summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    keys = ("n_ok", "unique_weight_hashes", "test_accuracy", "mean_pairwise_disagreement", "matches_control_bitwise")
    assert [{k: row[k] for k in keys} for row in ray_summary["conditions"]] == \
           [{k: row[k] for k in keys} for row in local_summary["conditions"]]


@pytest.mark.slow
def test_a_node_killed_mid_study_loses_no_trial_and_records_none_twice(cluster, tmp_path):
    worker = cluster.list_all_nodes()[1]
    args = [*SMALL, "--conditions=control,init", "--repeats=4", "--replicas=1", "--executor=ray",
            f"--ray_address={cluster.address}", f"--output_dir={tmp_path}"]
    trials = tmp_path / "trials.jsonl"
    driver = _bench_until_a_record(args, trials)
    assert trials.exists(), "no trial finished on the cluster"
    cluster.remove_node(worker, allow_graceful=False)  # its running task dies with it; Ray runs it again
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    records = read_records(trials)
    assert sorted((r["condition"], r["repeat"]) for r in records) == \
           sorted((c, r) for c in ("control", "init") for r in range(4))
    assert len({r["trial_key"] for r in records}) == 8
    assert not (tmp_path / "lost.jsonl").exists() or not (tmp_path / "lost.jsonl").read_text().strip()
    assert "8 trial(s) ran now, 0 already recorded" in out


@pytest.mark.slow
def test_a_cluster_that_cannot_be_reached_or_run_on_is_one_sentence(cluster, tmp_path):
    unreachable = run_program("harness.bench", *SMALL, "--conditions=control", "--repeats=2", "--executor=ray",
                              "--ray_address=127.0.0.1:1", f"--output_dir={tmp_path / 'a'}", timeout=180)
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.splitlines()[-1].startswith("error: cannot reach a Ray cluster at 127.0.0.1:1: ")
    no_gpus = run_program("harness.bench", *SMALL, "--conditions=control", "--repeats=2", "--executor=ray",
                          f"--ray_address={cluster.address}", "--ray_gpus_per_trial=1",
                          f"--output_dir={tmp_path / 'b'}")
    assert no_gpus.returncode == 2 and no_gpus.stderr.splitlines()[-1] == (
        "error: each trial asks for 1 GPU(s) (--ray_gpus_per_trial) and the Ray cluster has 0; add GPU nodes, or "
        "leave the flag out.")


# A head with token authentication (as Ray 2.60 starts one once ~/.ray/auth_token exists), started and shut down
# by a process of its own: Ray reads the mode once per process, and this one's clusters have none.
TOKEN_HEAD = """
import sys
from ray import cluster_utils
cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""


@pytest.mark.slow
def test_a_cluster_that_refuses_the_studys_token_is_one_sentence_saying_so(tmp_path):
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0123456789abcdef0123456789abcdef"}
    head = subprocess.Popen([sys.executable, "-c", TOKEN_HEAD], env={**os.environ, **token}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        address = head.stdout.readline().strip()
        assert address, "the head with a token did not start"
        refused = run_program("harness.bench", *SMALL, "--conditions=control", "--repeats=1", "--executor=ray",
                              f"--ray_address={address}", f"--output_dir={tmp_path / 'out'}",
                              env_vars={"RAY_AUTH_MODE": "disabled"}, timeout=180)
    finally:
        head.communicate(input="", timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        f"error: the Ray cluster at {address} refused this process: it uses token authentication, and this process "
        "has no token or another; set RAY_AUTH_MODE=token and give the cluster's token in ~/.ray/auth_token or "
        "$RAY_AUTH_TOKEN (docs/scale-out.md).")
    assert not (tmp_path / "out").exists()

# What the study's own Ray instance is (no address given): its head, and the niceness of a task's worker.
OWN_INSTANCE = """
import os, ray
from harness.studies import ray_executor
ray_executor.connect(None)
print(ray.get_runtime_context().gcs_address, ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote()))
"""


@pytest.mark.slow
def test_without_an_address_the_study_starts_its_own_instance_and_its_trials_run_at_its_priority(cluster):
    """On a shared machine: not another job's cluster (Ray's ray.init() joins one it finds here), and not Ray's
    nice 15 for the workers, under which a loaded machine barely runs the trials."""
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    started = subprocess.run(["nice", "-n", "3", sys.executable, "-c", OWN_INSTANCE], cwd=REPO, capture_output=True,
                             text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)})
    assert started.returncode == 0, started.stderr
    head, niceness = started.stdout.split()
    assert head != cluster.address
    assert int(niceness) == min(os.nice(0) + 3, 19)


@pytest.mark.parametrize("module, args", [
    ("harness.bench", [*SMALL, "--conditions=control", "--repeats=2"]),
    ("harness.reeval", [*SMALL[:3], "--params={tmp}/params.json", "--seeds=2"]),
    ("harness.compare_configs", [*SMALL[:3], "--config=A:", "--config=B:learning_rate=0.01", "--seeds=2"]),
])
def test_an_unreachable_cluster_is_one_sentence_before_any_directory_is_made(tmp_path, module, args):
    out = tmp_path / "out"
    (tmp_path / "params.json").write_text('{"learning_rate": 0.01}')
    result = run_program(module, *(a.format(tmp=tmp_path) for a in args), "--executor=ray",
                         "--ray_address=127.0.0.1:1", f"--output_dir={out}", timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: cannot reach a Ray cluster at 127.0.0.1:1: ")
    assert not out.exists()


def test_records_from_another_kind_of_machine_are_refused_but_a_conditions_own_setting_is_not(small_study):
    import copy

    from harness.errors import UsageError
    from harness.studies import ray_executor, unit_of_work

    control = read_records(small_study / "trials.jsonl")[0]
    # A record of env:onednn=1 returned first, as the reference: oneDNN differs from control's by its design.
    onednn = copy.deepcopy(control)
    onednn["condition"], onednn["environment"]["onednn_enabled"] = "env:onednn=1", \
        not control["environment"]["onednn_enabled"]
    ray_executor._refuse_other_machines(control, onednn, unit_of_work.environment_changes)
    ray_executor._refuse_other_machines(onednn, control, unit_of_work.environment_changes)
    elsewhere = copy.deepcopy(control)
    elsewhere["environment"].update(host="gpu-node-7", ray_node_id="a" * 56)
    elsewhere["environment"]["cpu"]["model"] = "Another CPU"
    with pytest.raises(UsageError) as refused:
        ray_executor._refuse_other_machines(elsewhere, onednn, unit_of_work.environment_changes)
    assert str(refused.value) == (
        f"trial control repeat {control['repeat']} ran on host gpu-node-7 (Ray node aaaaaaaaaaaa), where the bits come "
        f"out otherwise (CPU Another CPU there, {control['environment']['cpu']['model']} on host "
        f"{control['environment'].get('host', 'unknown')}); a study's trials must run on one kind of machine: ask "
        "for nodes of one kind (--ray_resources, docs/scale-out.md)")


@pytest.mark.slow
def test_ray_resources_send_every_task_to_the_nodes_that_offer_them_or_say_why_none_can(cluster, tmp_path):
    kind_b = cluster.list_all_nodes()[1].node_id
    args = [*SMALL, "--conditions=control,init", "--repeats=2", "--replicas=1", "--executor=ray",
            f"--ray_address={cluster.address}"]
    on_b = run_program("harness.bench", *args, "--ray_resources=kind_b=1", f"--output_dir={tmp_path / 'b'}")
    assert on_b.returncode == 0, on_b.stderr
    assert {r["environment"]["ray_node_id"] for r in read_records(tmp_path / "b" / "trials.jsonl")} == {kind_b}
    none = run_program("harness.bench", *args, "--ray_resources=kind_c=1", f"--output_dir={tmp_path / 'c'}")
    assert none.returncode == 2 and none.stderr.splitlines()[-1] == (
        "error: each trial asks for kind_c=1 (--ray_resources) and the Ray cluster offers 0 (its custom resources: "
        "kind_a, kind_b); start nodes with ray start --resources='{\"kind_c\": 1}', or leave it out.")
    apart = run_program("harness.bench", *args, "--ray_resources=kind_a=1,kind_b=1", f"--output_dir={tmp_path / 'd'}")
    assert apart.returncode == 2 and apart.stderr.splitlines()[-1] == (
        "error: no node of the Ray cluster offers CPU=1, kind_a=1, kind_b=1 together, which each trial asks for; give "
        "one kind of node all of them (ray start --num-gpus, --resources), or ask for less.")
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()



@pytest.mark.slow
def test_trials_whose_kind_of_node_has_left_are_lost_with_why_not_waited_for_for_ever(cluster, tmp_path):
    node_b = cluster.list_all_nodes()[1]
    args = [*SMALL, "--epochs=5", "--conditions=control", "--repeats=8", "--replicas=1", "--executor=ray",
            f"--ray_address={cluster.address}", "--ray_resources=kind_b=1", f"--output_dir={tmp_path}"]
    trials = tmp_path / "trials.jsonl"
    driver = _bench_until_a_record(args, trials)
    cluster.remove_node(node_b, allow_graceful=False)  # the only node offering kind_b: its tasks can go nowhere
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 1, err  # incomplete, not bad input: the same command completes it
    records, lost = read_records(trials), read_records(tmp_path / "lost.jsonl")
    assert records and lost and sorted(r["repeat"] for r in records + lost) == list(range(8))
    assert {r["reason"] for r in lost} == {
        "no node of the Ray cluster has offered CPU=1, kind_b=1 together for 30 s (the nodes that did have left), "
        "and its Ray task waited for one"}
    assert f"{len(lost)} trial(s) were lost" in out


@pytest.mark.slow
def test_a_cluster_gone_mid_study_is_one_sentence_its_trials_lost_and_a_local_resume_finishes_it(cluster, tmp_path):
    study = [*SMALL, "--epochs=5", "--conditions=control", "--repeats=8", "--replicas=1", f"--output_dir={tmp_path}"]
    trials = tmp_path / "trials.jsonl"
    driver = _bench_until_a_record([*study, "--executor=ray", f"--ray_address={cluster.address}"], trials)
    head = cluster.address
    for node in reversed(cluster.list_all_nodes()):  # every process of the cluster, its head (the GCS) last
        cluster.remove_node(node, allow_graceful=False)
    out, err = driver.communicate(timeout=600)
    # Not Ray's "Failed to connect to GCS within 60 seconds ... The program will terminate." (its exit 1, and no
    # word of the trials it took with it): the harness's own sentence, the trials not run in lost.jsonl.
    assert driver.returncode == 1 and "Traceback" not in err and "Failed to connect to GCS" not in err, err
    records, lost = read_records(trials), read_records(tmp_path / "lost.jsonl")
    assert lost and sorted(r["repeat"] for r in records + lost) == list(range(8))
    assert err.splitlines()[-1] == (
        f"error: the Ray cluster's head at {head} has not answered for 60 s: the cluster is gone, and "
        f"{len(lost)} trial(s) did not run ({tmp_path / 'lost.jsonl'}); run the same command again when it is back, "
        "or without --executor=ray to finish the study on this machine.")
    # On this machine (the nodes' kind: the resume checks it), the study ends without a trial run twice.
    local = run_program("harness.bench", *study)
    assert local.returncode == 0, local.stderr
    assert f"{len(lost)} trial(s) ran now, {len(records)} already recorded" in local.stdout
    assert sorted(r["repeat"] for r in read_records(trials)) == list(range(8))

@pytest.mark.parametrize("text, said", [
    ("gpu_a100", "--ray_resources takes NAME=AMOUNT pairs separated by commas (e.g. accelerator_type:A100=0.001), "
                 "got 'gpu_a100'"),
    ("=1", "--ray_resources takes NAME=AMOUNT pairs separated by commas (e.g. accelerator_type:A100=0.001), got '=1'"),
    ("gpu_a100=0", "--ray_resources: the amount of gpu_a100 must be a positive number, got '0'"),
    ("gpu_a100=nan", "--ray_resources: the amount of gpu_a100 must be a positive number, got 'nan'"),
    ("gpu_a100=0.00001", "--ray_resources: Ray counts resources to 0.0001, and the amount of gpu_a100 is '0.00001'; "
                         "round it (0.001 is the usual share of a label every node of the kind has one of)"),
    ("GPU=1", "--ray_resources: GPU is Ray's own resource (each trial takes 1 CPU; GPUs: --ray_gpus_per_trial); name "
              "the custom resources that mark your nodes"),
    ("TPU=0.5", "--ray_resources: TPU is Ray's own resource (each trial takes 1 CPU; GPUs: --ray_gpus_per_trial); "
                "name the custom resources that mark your nodes"),
])
def test_ray_resources_that_cannot_be_asked_for_are_one_sentence(text, said):
    from harness.errors import UsageError
    from harness.studies import ray_executor

    with pytest.raises(UsageError) as refused:
        ray_executor.parse_resources(text)
    assert str(refused.value) == said


def test_ray_resources_are_read_as_pairs_a_task_asks_for():
    from harness.studies import Executor, ray_executor

    pairs = ray_executor.parse_resources(" accelerator_type:A100=0.001, pool=1 ,")
    assert pairs == (("accelerator_type:A100", 0.001), ("pool", 1.0))
    assert ray_executor._task_resources(Executor("ray", None, 1.0, pairs)) == {
        "num_cpus": 1, "num_gpus": 1.0, "resources": {"accelerator_type:A100": 0.001, "pool": 1.0}}


@pytest.mark.parametrize("asked, said", [
    ("accelerator_type:A100=0.001", "each trial asks for accelerator_type:A100=0.001 (--ray_resources) and the Ray "
                                    "cluster offers 0 (its custom resources: accelerator_type:T4); add nodes with "
                                    "that GPU, or leave it out"),
    ("pool=2", "each trial asks for pool=2 (--ray_resources) and the Ray cluster offers 0 (its custom resources: "
               "accelerator_type:T4); start nodes with ray start --resources='{\"pool\": 2}', or leave it out"),
])
def test_a_resource_no_node_offers_says_how_to_get_one(asked, said):
    """Ray labels GPU nodes with their model itself: the way to an A100 is an A100 node, not a label."""
    import types

    from harness.errors import UsageError
    from harness.studies import Executor, ray_executor

    t4_node = {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0, "accelerator_type:T4": 1.0,
                                            "node:10.0.0.2": 1.0}}
    fake_ray = types.SimpleNamespace(cluster_resources=lambda: t4_node["Resources"], nodes=lambda: [t4_node])
    with pytest.raises(UsageError) as refused:
        ray_executor.check_resources(fake_ray, Executor("ray", None, 1.0, ray_executor.parse_resources(asked)))
    assert str(refused.value) == said
    ray_executor.check_resources(fake_ray, Executor("ray", None, 1.0, (("accelerator_type:T4", 0.001),)))
