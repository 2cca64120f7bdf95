"""A study's trials as Ray tasks (`--executor=ray`): many machines, scheduled as they free up.

Each unit of work (a lone trial, or a replica group whole) is one Ray task, run in a worker process of its
process environment: its condition's environment variables and its thread pools are the task's
`runtime_env`, and Ray keeps a separate pool of worker processes per runtime_env, so no task lands in a
process set up otherwise. On CPUs a worker process trains one task after another, as the study's own process
and its local workers do (a trial's bits are the same in a fresh process: every random op is stateless and
op determinism is switched per trial), which spares each task TensorFlow's import (about 9 s of a CPU here).
A task with a GPU (--ray_gpus_per_trial), or with --isolation=process, gets a fresh process (`max_calls=1`):
TensorFlow holds a GPU's memory, and the device it first saw, for the life of its process. The task trains
and makes
the records where it ran, so they carry that node's host and environment; it returns them, with their
per-example arrays, and this process, the only writer, appends them under the study directory's lock:
resume, the summary, the gate and the report read them as any other records.

A node that dies takes its tasks with it; Ray runs them again elsewhere (`max_retries`), and each
returns its records once. A task that still fails is a lost trial (LOST_FILE, with why), which a resume
runs again. Bad input found in a task (exit 2 at home) stops the study with its sentence. A whole cluster
gone (its head, the GCS, answers no more for HEAD_GONE_S) stops the study with ClusterGone, its running trials
lost, before Ray's own client would end this process with a message of its own (RAY_HEAD_WAIT).

Paths in a trial's config (your model file, your data) are read on the node: on one machine, or nodes
sharing the filesystem, as given; elsewhere they must exist at the same path (an image, a shared
volume). Tasks start in the directory this process ran from where that exists there.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from harness.errors import StudyIncomplete, UsageError, first_line

if TYPE_CHECKING:
    import numpy as np

    from harness.studies import Executor
    from harness.studies.unit_of_work import TrialSpec
    from harness.trial.config import TrialConfig

# Variables Ray sets in its worker processes that the records hold as bit settings (environment.py).
RAY_SET_VARIABLES = ("OMP_NUM_THREADS",)
# How long a cluster's head may take to accept a connection before its address is said to be wrong.
CONNECT_TIMEOUT_S = 10
# Set in every task's runtime_env to its thread pools: Ray reuses a worker process only for tasks of the same
# runtime_env, and a process's pools are fixed at its first op.
POOLS_VARIABLE = "HARNESS_RAY_THREAD_POOLS"
# How many times Ray runs a task again when its worker or node dies (not when the trial fails: a failed
# trial is a record). Three covers a preempted node and its replacement's first failure.
MAX_RETRIES = 3
# Resources Ray defines itself: a task takes one CPU, and its GPUs are --ray_gpus_per_trial's; Ray counts
# other accelerators (ray._private.accelerators, 2.60) by rules of its own, and TensorFlow here trains on neither.
PREDEFINED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory", "TPU", "NPU", "HPU", "neuron_cores", "RBLN",
                        "FURIOSA", "MBLT", "TTNPU")
# While tasks wait, how often the cluster is asked whether a node can still run them, and for how long none may
# before they are given up as lost (the nodes of the kind they ask for have left: Ray would wait for ever).
NODE_CHECK_S = 10
NODE_GONE_S = 30
# How long the cluster's head (its GCS) may not answer before the study gives the whole cluster up: Ray's own
# default wait for it (gcs_rpc_server_reconnect_timeout_s), long enough for a head that restarts (GCS fault
# tolerance) to come back.
HEAD_GONE_S = 60
# Ray's client ends the process that waits longer for the head than its wait, with its own message and nothing
# of the trials ("Failed to connect to GCS within 60 seconds ... The program will terminate."): this process's
# wait is set longer (unless the user set it), so that the harness's HEAD_GONE_S ends first, with a sentence.
RAY_HEAD_WAIT = ("RAY_gcs_rpc_server_reconnect_timeout_s", "600")
# Ray starts worker processes at nice 15: on a loaded machine a study's trials then barely run. Where the
# harness starts the nodes (no address: a Ray instance on this machine) they run at the study's own priority.
WORKER_NICENESS = ("RAY_worker_niceness", "0")


class ClusterGone(Exception):
    """The cluster's head has not answered for HEAD_GONE_S: the cluster is gone, with the tasks it ran."""

    def __init__(self, head: str):
        super().__init__(f"the Ray cluster's head at {head} has not answered for {HEAD_GONE_S} s")
        self.head = head


def parse_resources(text: str) -> tuple[tuple[str, float], ...]:
    """--ray_resources' NAME=AMOUNT,... as checked (name, amount) pairs."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, amount = item.rpartition("=")
        if not equals or not name.strip():
            raise UsageError(f"--ray_resources takes NAME=AMOUNT pairs separated by commas (e.g. "
                             f"accelerator_type:A100=0.001), got {item!r}")
        pairs.append((name.strip(), amount.strip()))
    return checked_resources(pairs, "--ray_resources")


def checked_resources(pairs: Iterable[tuple[str, Any]], named_by: str) -> tuple[tuple[str, float], ...]:
    """(name, amount) pairs of custom Ray resources each task asks for, sorted; one sentence naming `named_by`
    (the flag or argument) for an amount that is not a positive number or a resource Ray defines itself."""
    checked = {}
    for name, amount in pairs:
        if name in PREDEFINED_RESOURCES:
            raise UsageError(f"{named_by}: {name} is Ray's own resource (each trial takes 1 CPU; GPUs: "
                             "--ray_gpus_per_trial); name the custom resources that mark your nodes")
        try:
            value = float(amount)
        except (TypeError, ValueError):
            value = math.nan
        if not (math.isfinite(value) and value > 0) or isinstance(amount, bool):
            raise UsageError(f"{named_by}: the amount of {name} must be a positive number, got {amount!r}")
        if round(value, 4) != value:  # Ray refuses finer amounts when the task is declared, mid-study
            raise UsageError(f"{named_by}: Ray counts resources to 0.0001, and the amount of {name} is {amount!r}; "
                             "round it (0.001 is the usual share of a label every node of the kind has one of)")
        checked[str(name)] = value
    return tuple(sorted(checked.items()))


def connect(address: str | None) -> Any:
    """`ray`, connected: to the cluster at `address` (or $RAY_ADDRESS), else to a Ray instance this process
    starts on this machine. One sentence when no cluster answers there."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor=ray needs Ray: pip install 'tf-determinism-harness[ray]' (or pip install "
                         "ray)") from None
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_reachable(address)
    # Read by Ray's C++ core when ray.init starts it, and by the processes of a Ray instance it starts here.
    os.environ.setdefault(*RAY_HEAD_WAIT)
    if not address:
        os.environ.setdefault(*WORKER_NICENESS)
    try:
        # The tasks' own output (TensorFlow's start-up lines) stays in Ray's logs; the progress shows each trial.
        # "local": a Ray instance of this study's own, not one of another job's that ray.init() would join here.
        ray.init(address=address or "local", log_to_driver=False, logging_level=logging.WARNING,
                 include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"at {address}" if address else "on this machine"
        if _refused_for_authentication(error):
            raise UsageError(f"the Ray cluster {where} refused this process: it uses token authentication, and this "
                             "process has no token or another; set RAY_AUTH_MODE=token and give the cluster's token "
                             "in ~/.ray/auth_token or $RAY_AUTH_TOKEN (docs/scale-out.md)") from None
        raise UsageError(f"cannot reach a Ray cluster {where}: {first_line(error)}; start one with "
                         "`ray start --head`, or give --ray_address=HOST:PORT") from None
    return ray


def _refused_for_authentication(error: BaseException) -> bool:
    """Whether connecting failed because the cluster asks for another token (Ray names the cause only in a
    chained error's text, under a generic ConnectionError)."""
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _ray_set_here() -> dict[str, str | None]:
    """This process's values of the variables Ray sets in its workers (None: unset), for the tasks to restore."""
    return {name: os.environ.get(name) for name in RAY_SET_VARIABLES}


def _check_reachable(address: str) -> None:
    """One sentence, in seconds, when nothing listens at a HOST:PORT address: ray.init would retry for
    minutes. Other forms (ray://, auto) are left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UsageError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}; start one with "
                         "`ray start --head`, or give --ray_address=HOST:PORT") from None


def check_cluster(executor: Executor, configs: Iterable[TrialConfig]) -> None:
    """Checks the trials of `configs` can run on the executor's cluster: one sentence otherwise, before a
    program writes anything. A model or data handed over as a Python object first (no cluster is reached for
    it), then the cluster's address and resources."""
    for config in configs:
        refuse_python_objects(config)
    check_resources(connect(executor.address), executor)


def refuse_python_objects(config: TrialConfig) -> None:
    """A model or data handed over as a Python object stays in this process: a Ray task elsewhere cannot
    build it."""
    from harness.trial import user_code

    for named, what in ((config.model, "model"), (config.dataset, "data")):
        if user_code.is_in_process(named):
            raise UsageError(f"the Ray executor trains on other processes and machines, which cannot see the {what} "
                             "handed over in Python; name it as path/to/file.py:function (data: npz:PATH)")


def check_resources(ray: Any, executor: Executor) -> None:
    """One sentence when the cluster cannot run a single task: no CPU, fewer GPUs than a trial asks, a custom
    resource no node offers, or no one node offering all a trial asks for (Ray would wait for one forever)."""
    resources = ray.cluster_resources()
    if resources.get("CPU", 0) < 1:
        raise UsageError("the Ray cluster has no CPU to run trials on; add a node (ray start --address=...)")
    if executor.gpus_per_trial and resources.get("GPU", 0) < executor.gpus_per_trial:
        raise UsageError(f"each trial asks for {executor.gpus_per_trial:g} GPU(s) (--ray_gpus_per_trial) and the "
                         f"Ray cluster has {resources.get('GPU', 0):g}; add GPU nodes, or leave the flag out")
    for name, amount in executor.resources:
        if resources.get(name, 0) < amount:
            # Ray's own per-node resources (node:IP, node:__internal_head__) are not kinds a user names.
            offered = ", ".join(sorted(kind for kind in resources
                                       if kind not in PREDEFINED_RESOURCES and not kind.startswith("node:"))) or "none"
            # Ray sets accelerator_type:MODEL on nodes with that GPU model itself: a label would only pretend.
            add = "add nodes with that GPU" if name.startswith("accelerator_type:") else \
                f"start nodes with ray start --resources='{{\"{name}\": {max(1, math.ceil(amount))}}}'"
            raise UsageError(f"each trial asks for {name}={amount:g} (--ray_resources) and the Ray cluster offers "
                             f"{resources.get(name, 0):g} (its custom resources: {offered}); {add}, or leave it out")
    if not _a_node_can_run(ray, executor):
        raise UsageError(f"no node of the Ray cluster offers {_asked(executor)} together, which each trial asks for; "
                         "give one kind of node all of them (ray start --num-gpus, --resources), or ask for less")


def _wanted(executor: Executor) -> dict[str, float]:
    """All a task asks a node for: one CPU, and the executor's GPUs and custom resources."""
    return {name: amount for name, amount in (("CPU", 1.0), ("GPU", executor.gpus_per_trial), *executor.resources)
            if amount}


def _asked(executor: Executor) -> str:
    return ", ".join(f"{name}={amount:g}" for name, amount in _wanted(executor).items())


def _a_node_can_run(ray: Any, executor: Executor) -> bool:
    """Whether a live node of the cluster offers everything one task asks for (free or not)."""
    wanted = _wanted(executor)
    return any(node.get("Alive") and all(node.get("Resources", {}).get(name, 0) >= amount
                                         for name, amount in wanted.items())
               for node in ray.nodes())


def _head(ray: Any) -> str | None:
    """HOST:PORT of the cluster's head (its GCS) as this process reaches it; None where Ray does not say (a
    ray:// client reaches it through a server of the cluster)."""
    try:
        return ray.get_runtime_context().gcs_address or None
    except Exception:  # noqa: BLE001 (a client's context has no GCS address)
        return None


def _answers(head: str | None) -> bool:
    """Whether something listens at the head's address. Asked before any call of Ray's that goes to the head:
    Ray's calls wait for a head that is gone (and Ray ends the process at its own wait)."""
    if head is None:
        return True
    host, _, port = head.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _check_head(head: str | None) -> None:
    """Returns once the head answers; ClusterGone when it has not for HEAD_GONE_S."""
    since = time.monotonic()
    while not _answers(head):
        if time.monotonic() - since >= HEAD_GONE_S:
            raise ClusterGone(str(head))
        time.sleep(1)


def _within(seconds: float, call: Callable[[], Any]) -> Any | None:
    """call()'s value, or None when it has not returned in `seconds` or failed: a call to a head that went away
    after it was asked would wait for it, and this process must stay free to give the cluster up."""
    value: list[Any] = []
    threading.Thread(target=lambda: value.append(call()), daemon=True).start()
    deadline = time.monotonic() + seconds
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
    return value[0] if value else None


def _first_done(ray: Any, refs: list[Any], executor: Executor) -> Any | None:
    """The first of `refs` to finish; None when no live node has been able to run them for NODE_GONE_S (the
    nodes of the kind they ask for have left, and Ray would keep them waiting for ever); ClusterGone when the
    cluster's head has not answered for HEAD_GONE_S."""
    head = _head(ray)
    gone_since = head_gone_since = None
    while True:
        done, _ = ray.wait(refs, num_returns=1, timeout=NODE_CHECK_S)
        if done:
            return done[0]
        can_run = _within(CONNECT_TIMEOUT_S, lambda: _a_node_can_run(ray, executor)) if _answers(head) else None
        if can_run is None:  # the head did not answer
            head_gone_since = head_gone_since or time.monotonic()
            if time.monotonic() - head_gone_since >= HEAD_GONE_S:
                raise ClusterGone(str(head))
            continue
        head_gone_since = None
        if can_run:
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since >= NODE_GONE_S:
            return None


def _no_node_left(executor: Executor) -> str:
    return (f"no node of the Ray cluster has offered {_asked(executor)} together for {NODE_GONE_S} s (the nodes "
            "that did have left)")


def _refuse_other_machines(record: dict[str, Any], reference: dict[str, Any], changes_of: Callable) -> None:
    """A trial that ran where the bits come out otherwise (another CPU, GPU, TensorFlow, image: every
    environment.BIT_SETTINGS entry) than the study's other trials is not one of its repeats: recorded, it
    would make a reproducible condition look irreproducible. One sentence naming both machines."""
    from harness.platform import environment
    from harness.studies.unit_of_work import condition_of

    # What either trial's condition sets itself (env:onednn=1's oneDNN, env:threads=1's pools) differs by design.
    condition = condition_of(reference.get("condition"))
    by_design = environment.settings_changed_by(dict(condition.env_vars), dict(condition.config_changes))
    changes = [change for change in changes_of(record, environment.bit_identity(reference.get("environment") or {}))
               if change[0] not in by_design]
    if changes:
        what = "; ".join(f"{name} {there} there, {here} on {_where(reference)}" for name, there, here in changes)
        raise UsageError(f"trial {record['condition']} repeat {record['repeat']} ran on {_where(record)}, where the "
                         f"bits come out otherwise ({what}); a study's trials must run on one kind of machine: "
                         "ask for nodes of one kind (--ray_resources, docs/scale-out.md)")


def _where(record: dict[str, Any]) -> str:
    environment = record.get("environment") or {}
    node = environment.get("ray_node_id")
    return f"host {environment.get('host', 'unknown')}" + (f" (Ray node {node[:12]})" if node else "")


def measure_cost(config: Any, seeds: Any, blocks: int, xla: bool, *,
                 executor: Executor) -> tuple[dict[str, Any], dict[str, str]]:
    """Determinism's cost (trial/cost.py's measurement) measured in a Ray task, on a node of the kind the
    trials ran on: (the measurement, that node's bit identity)."""
    ray = connect(executor.address)
    try:
        return _measure_cost_on(ray, config, seeds, blocks, xla, executor)
    except ClusterGone as gone:
        raise StudyIncomplete(f"determinism's cost was not measured: {gone}, and the cluster is gone; the trials' "
                              "records are kept, and the same command measures it when it is back, or without "
                              "--executor=ray on this machine") from None


def _measure_cost_on(ray: Any, config: Any, seeds: Any, blocks: int, xla: bool,
                     executor: Executor) -> tuple[dict[str, Any], dict[str, str]]:
    _check_head(_head(ray))  # the cluster may have gone since the trials ran: Ray's calls would wait for it
    check_resources(ray, executor)  # the trials' nodes may have left since they ran
    task = ray.remote(max_calls=1, max_retries=MAX_RETRIES, **_task_resources(executor))(_measure_cost)
    try:
        measuring = task.remote(config.as_dict(), seeds.as_dict(), blocks, xla, os.getcwd(), _ray_set_here())
        if _first_done(ray, [measuring], executor) is None:
            ray.cancel(measuring, force=True)
            raise UsageError(f"determinism's cost was not measured: {_no_node_left(executor)}; the trials' records "
                             "are kept, and the same command measures it when such a node is back")
        return ray.get(measuring)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, UsageError):
            raise UsageError(str(error.cause)) from None
        raise UsageError(f"the Ray task measuring determinism's cost raised {type(error.cause).__name__}: "
                         f"{first_line(error.cause)}") from None
    except ray.exceptions.RayError as error:
        raise UsageError(f"the Ray task measuring determinism's cost failed after {MAX_RETRIES} retries: "
                         f"{first_line(error)}") from None


def _measure_cost(config: dict[str, Any], seeds: dict[str, Any], blocks: int, xla: bool, cwd: str,
                  ray_set: dict[str, str | None]) -> tuple[dict[str, Any], dict[str, str]]:
    _as_at_home(cwd, ray_set)
    from harness.platform import determinism, environment
    from harness.trial import cost
    from harness.trial.config import TrialConfig
    from harness.trial.seeds import SeedSet

    base = TrialConfig(**config)
    determinism.set_thread_pools(base.intra_op_threads, base.inter_op_threads)
    measured = cost.measure(base, SeedSet(**seeds), blocks=blocks, xla=xla)
    return measured, environment.bit_identity(environment.capture())


def _as_at_home(cwd: str, ray_set: dict[str, str | None]) -> None:
    """A task's process as the study's own would be: in its directory where that exists here (relative paths
    in a config, your model file and data, mean what they meant at home), and with the variables Ray sets in
    its workers (OMP_NUM_THREADS=1 for a one-CPU task) as the study had them: they are recorded, and a
    trial's bits could depend on them. Before TensorFlow loads, which reads them once. POOLS_VARIABLE, which
    only names the task's pool of worker processes, is dropped: records keep HARNESS_* variables as the user's."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    os.environ.pop(POOLS_VARIABLE, None)
    for name, value in ray_set.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _train_unit(specs_json: list[dict[str, Any]], recorded: list[str], cwd: str,
                ray_set: dict[str, str | None]) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """A Ray task's body: trains one unit in this worker process; (record, per-example arrays) of each member
    not yet recorded."""
    _as_at_home(cwd, ray_set)
    import ray

    from harness.platform import determinism
    from harness.studies.unit_of_work import TrialSpec, make_record, train_unit

    specs = [TrialSpec.from_json(item) for item in specs_json]
    # Thread pools are fixed once per process, before the first op: this one's are its trials'.
    determinism.set_thread_pools(specs[0].config.intra_op_threads, specs[0].config.inter_op_threads)
    results = train_unit(specs)
    node = ray.get_runtime_context().get_node_id()
    returned = []
    for spec, result in zip(specs, results, strict=True):
        if spec.key not in recorded:
            record = make_record(spec, result)
            record["environment"] = {**record["environment"], "ray_node_id": node}
            returned.append((record, result.per_example))
    return returned


def _task_resources(executor: Executor) -> dict[str, Any]:
    """What each task asks Ray for: one CPU, the GPUs and the custom resources of the executor."""
    return {"num_cpus": 1, "num_gpus": executor.gpus_per_trial, "resources": dict(executor.resources)}


def run(units: list[list[TrialSpec]], recorded: set[str], *, executor: Executor, fresh_processes: bool,
        reference: dict[str, Any] | None,
        write: Callable[[dict[str, Any], dict[str, np.ndarray]], dict[str, Any]],
        finished: Callable[[list[dict[str, Any]]], None],
        lost: Callable[[list[TrialSpec], str], None]) -> None:
    """Runs `units` as Ray tasks; as each returns, `write`s its records (here, the one writer) and tells
    `finished`; a unit whose task failed for good goes to `lost` with why, and so do all that ran or waited
    when the cluster is gone (then ClusterGone). `reference`: a record the study
    already holds, whose environment every returned record must share (else the first returned one's).
    `fresh_processes`: every task in a process of its own (--isolation=process); GPU tasks always are."""
    from harness.studies.unit_of_work import environment_changes

    ray = connect(executor.address)
    check_resources(ray, executor)
    # max_calls=0: a worker process is reused without limit (within its runtime_env's pool).
    max_calls = 1 if fresh_processes or executor.gpus_per_trial else 0
    task = ray.remote(max_calls=max_calls, max_retries=MAX_RETRIES, **_task_resources(executor))(_train_unit)
    keys, cwd, ray_set = sorted(recorded), os.getcwd(), _ray_set_here()
    running = {}
    for unit in units:
        # The condition's environment (env:onednn, env:xla) is set before the worker process starts, and the
        # thread pools (fixed once per process) name its pool of processes, so a reused one is set up alike.
        pools = f"{unit[0].config.intra_op_threads},{unit[0].config.inter_op_threads}"
        options = {"runtime_env": {"env_vars": {**dict(unit[0].env_vars), POOLS_VARIABLE: pools}}}
        running[task.options(**options).remote([spec.to_json() for spec in unit], keys, cwd, ray_set)] = unit
    died = False
    try:
        while running:
            try:
                ref = _first_done(ray, list(running), executor)
            except ClusterGone as gone:  # nothing left to cancel: the tasks went with the cluster
                for waiting in list(running):
                    lost(running.pop(waiting), f"{gone}: the cluster is gone, and its Ray task with it")
                raise
            if ref is None:
                for waiting in list(running):
                    ray.cancel(waiting, force=True)
                    lost(running.pop(waiting), f"{_no_node_left(executor)}, and its Ray task waited for one")
                break
            unit = running.pop(ref)
            try:
                returned = ray.get(ref)
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, UsageError):
                    raise UsageError(str(error.cause)) from None
                lost(unit, f"its Ray task raised {type(error.cause).__name__}: {first_line(error.cause)}")
                continue
            except ray.exceptions.RayError as error:  # its worker or node died, after every retry
                lost(unit, f"its Ray task failed after {MAX_RETRIES} retries: {first_line(error)}")
                died = True
                continue
            for record, _ in returned:
                reference = reference or record
                _refuse_other_machines(record, reference, environment_changes)
            finished([write(record, arrays) for record, arrays in returned])
        if died:  # with the whole cluster? Then say so, not only that some trials were lost
            _check_head(_head(ray))
    finally:
        for ref in running:  # Ctrl-C, or bad input from one task: the others stop too
            ray.cancel(ref, force=True)
