"""A study: every condition's N trials, planned with stable keys, run once, resumable.

Trials are planned up front (one `TrialSpec` each, keyed by config, seeds,
condition and repeat), so a re-run into the same directory runs only the
trials that have no record yet. Repeats are the outer loop and conditions the
inner one, so deterministic and nondeterministic trials interleave and machine
noise hits both alike.

Where a trial runs: by default in this process (every random op is stateless
and op determinism is switched per trial, so results match a fresh process).
Trials that need another process environment (thread pools other than this
process's, an environment variable such as TF_ENABLE_ONEDNN_OPTS) run in a
fresh worker process per environment. `isolation="process"` gives every trial
a fresh process; `workers=K` spreads trials (a replica group as a whole) over K
worker processes.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from harness.errors import StudyIncomplete, UsageError, meaningful_lines
from harness.platform import environment, processes
from harness.schema import LOST_FILE, STUDY_FILE, TRIAL_SCHEMA, TRIALS_FILE
from harness.studies import DEFAULT_TRIAL_TIMEOUT_S, Executor, per_example, ray_executor, tensorboard_curves
from harness.studies.conditions import Condition
from harness.studies.progress import Outcome, Progress
from harness.studies.records import (
    append_record,
    load_document,
    make_trial_record,
    read_records,
    schema_errors,
    trial_identity,
    utc_timestamp,
)
from harness.studies.unit_of_work import (
    TrialSpec,
    condition_of,
    environment_changes,
    make_record,
    replica_path,
    train_unit,
)
from harness.trial import grouped, user_code, vectorized
from harness.trial.config import TrialConfig
from harness.trial.datasets import BUILTIN_DATASETS
from harness.trial.seeds import SeedSet
from harness.trial.train import (
    TrialResult,
    build_trainable,
    check_data,
    inputs_identity,
    remember_model_facts,
)


@dataclasses.dataclass(frozen=True)
class TimeLimit:
    """How long a trial (or a replica group) may train before its worker process is ended and it is recorded as
    failed. `given`: asked for (--trial_timeout), so trials that would share the study's process run in a worker
    process instead (TensorFlow cannot be interrupted safely inside a process; docs/failures.md); else the
    built-in benchmarks' default, kept where trials run in worker processes anyway."""

    seconds: int
    given: bool


def time_limit_of(base: TrialConfig, seconds: int | None) -> TimeLimit | None:
    """The time limit of a study's trials: `seconds` as given (0: none); not given, DEFAULT_TRIAL_TIMEOUT_S for
    the built-in models on built-in data, none for a model or data of the user's (training may take hours)."""
    if seconds is not None:
        return TimeLimit(seconds, True) if seconds else None
    builtin = not base.is_user_model and base.dataset.partition(":")[0] in (*BUILTIN_DATASETS, "tfds")
    return TimeLimit(DEFAULT_TRIAL_TIMEOUT_S, False) if builtin else None


def refuse_python_objects_with_a_time_limit(base: TrialConfig, time_limit: TimeLimit | None) -> None:
    """harness.study's model or data handed over as Python objects cannot reach the worker process a time limit
    needs (it stops a trial by ending that process): one sentence before anything is planned."""
    if time_limit and time_limit.given:
        for named, what in ((base.model, "model"), (base.dataset, "data")):
            if user_code.is_in_process(named):
                raise UsageError(f"trial_timeout stops a trial by ending the worker process it trains in, which "
                                 f"cannot see the {what} handed over in Python; name it as path/to/file.py:function "
                                 "(data: npz:PATH), or leave trial_timeout out")


def probe_apart(base: TrialConfig, output_dir: str, isolation: str, workers: int,
                time_limit: TimeLimit | None) -> None:
    """Where trials run in worker processes (--isolation=process, --workers, --trial_timeout given), loads the
    study's data and probes its model (the one build planners ask of, train.model_facts) in a worker process too,
    so that code of the user's that kills or segfaults its process, or (with a time limit) never returns, is one
    sentence naming it rather than the end of the study without a word, or a study that hangs for ever. The facts
    are kept here (train.remember_model_facts): this process does not build the model for them again."""
    mine = base.is_user_model or base.dataset.partition(":")[0] not in (*BUILTIN_DATASETS, "tfds")
    given = bool(time_limit and time_limit.given)
    if not mine or not (isolation == "process" or workers > 1 or given) \
            or any(user_code.is_in_process(named) for named in (base.model, base.dataset)):
        return
    seconds = time_limit.seconds if given else None
    stderr = tempfile.TemporaryFile("w+")  # read once it exits: a pipe it fills would block it first
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.worker", "--probe", f"--output_dir={output_dir}",
         f"--parent_pid={os.getpid()}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
        preexec_fn=processes.parent_death_signal())
    process.stdin.write(json.dumps(base.as_dict()))
    process.stdin.close()
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    said: dict[str, Any] = {}
    deadline = None  # each call into the user's code has the limit; TensorFlow's import before it does not count
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()) if deadline else None)
            except queue.Empty:
                who = base.model if said["doing"] == user_code.DOING["model"] else base.dataset
                raise UsageError(f"{who} did not return within --trial_timeout={seconds} s {said['doing']}") from None
            if line is None:
                break
            if line.startswith("{"):
                said.update(json.loads(line))
                deadline = time.monotonic() + seconds if seconds and "doing" in said else None
    except BaseException:  # its time is up, or this run was interrupted
        process.kill()
        process.wait()
        raise
    returncode = process.wait()
    stderr.seek(0)
    errors = [line.removeprefix("error: ") for line in stderr.read().splitlines() if line.startswith("error: ")]
    stderr.close()
    if returncode == 2 and errors:
        raise UsageError(errors[-1].rstrip("."))
    if returncode != 0:
        doing = said.get("doing", user_code.DOING["data"])
        who = base.model if doing == user_code.DOING["model"] else base.dataset
        raise UsageError(f"{who} ended its process ({exit_description(returncode)}) {doing}")
    if "facts" in said:
        remember_model_facts(base, said["facts"])


def plan(base: TrialConfig, base_seed: int, seeds: SeedSet, conditions: list[Condition], repeats: int,
         study_id: str, replicas: int | str = 1) -> list[TrialSpec]:
    """Every trial of the study, repeats outermost so conditions interleave.

    `replicas` (a number, or "auto": each path's auto_replicas, in groups of even size) groups each
    condition's repeats into replica groups where its trials can train that way (`grouped.why_not`);
    elsewhere trials run one by one.
    """
    flippable = _nonzero_weights(base, seeds) if any(c.flips_a_bit for c in conditions) else []
    auto: dict[str, int] = {}  # auto's K per path, from the base config's model: one build per path, not per condition

    def wanted(config: TrialConfig) -> int:
        if replicas != "auto":
            return int(replicas)
        path = replica_path(config)
        if path not in auto:
            auto[path] = vectorized.auto_replicas(base) if path == "stacked" else grouped.auto_replicas(base)
        return auto[path]

    sizes = {}
    for condition in conditions:
        # Each condition's own trial config (its first repeat's) decides whether and how its trials group.
        # A replica's bits are its trial's alone (harness/trial/vectorized.py, grouped.py), so identical
        # repeats (control, kernels) stay identical runs in a group, and an environment variant's group
        # trains in its environment (a worker process of its own, or under other processes' load) as its
        # trials would alone.
        config = condition.trial(base, base_seed, seeds, 0, flippable)[0]
        sizes[condition.name] = 1 if grouped.why_not(config) else _group_size(
            wanted(config), replicas == "auto", repeats)
    specs = []
    for repeat in range(repeats):
        for condition in conditions:
            config, trial_seeds = condition.trial(base, base_seed, seeds, repeat, flippable)
            size, group = sizes[condition.name], None
            if size > 1:
                group = repeat // size
                config = config.replace(replicas=min(size, repeats - group * size))
            specs.append(TrialSpec(study_id, condition.name, repeat, config, trial_seeds, condition.env_vars, group))
    return specs


def parse_replicas(text: str) -> int | str:
    """A --replicas value: a whole number of at least 1, or "auto"."""
    if text == "auto":
        return "auto"
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--replicas must be a whole number of at least 1, or auto; got {text!r}")
    return int(text)


def alone_reasons(specs: list[TrialSpec], auto: bool = False) -> dict[str, str]:
    """The conditions among `specs` that train one at a time although they have several trials, each
    with its reason: what a study with --replicas (`auto`: --replicas=auto) says it could not group."""
    repeats = collections.Counter(spec.condition for spec in specs)
    reasons: dict[str, str] = {}
    for spec in specs:
        if spec.group is None and spec.condition not in reasons and repeats[spec.condition] > 1:
            reason = grouped.why_not(spec.config)
            if reason is None and auto:
                reason = ("--replicas=auto trains a model this size one trial at a time (a group would gain "
                          "little, docs/speed.md); --replicas=K groups it anyway")
            if reason:
                reasons[spec.condition] = reason
    return reasons


def _group_size(wanted: int, even: bool, repeats: int) -> int:
    """Replicas per group for a condition of `repeats` trials that can be grouped.
    `even` (auto): groups of even size, as many as `wanted` requires."""
    if not even:
        return max(1, min(wanted, repeats))
    # As many groups as the model requires, of even size: 10 repeats at K=9 are two groups of 5, not 9 and 1.
    groups = math.ceil(repeats / wanted)
    return math.ceil(repeats / groups)


def _nonzero_weights(config: TrialConfig, seeds: SeedSet) -> list[int]:
    """Flat indices (over all variables, in order) of the model's nonzero initial weights."""
    from harness.trial.datasets import dataset_of

    trainable = build_trainable(config, dataset_of(config), seeds)
    values = np.concatenate([np.asarray(v.numpy()).reshape(-1) for v in trainable.variables])
    return np.flatnonzero(values).tolist()


def run_and_record(spec: TrialSpec, output_dir: Path) -> dict[str, Any]:
    """Runs one trial in this process and records it (under other processes' load for `env:load=1`)."""
    return _record(spec, train_unit([spec])[0], output_dir)


def write_record(record: dict[str, Any], arrays: dict[str, np.ndarray], output_dir: Path) -> dict[str, Any]:
    """Appends a trial's record, its per-example arrays beside it, and writes its TensorBoard curves: every
    record of a study goes through here. Returns the record as written."""
    # The per-example arrays go beside the record, written before it: a record never names a missing file.
    reference = per_example.write(output_dir, arrays)
    if reference:
        record = {**record, "outputs": {**record["outputs"], "per_example": reference}}
    append_record(output_dir / TRIALS_FILE, record)
    tensorboard_curves.write_trial(output_dir / "tb", record)
    return record


def _record(spec: TrialSpec, result: TrialResult, output_dir: Path) -> dict[str, Any]:
    return write_record(make_record(spec, result), result.per_example, output_dir)


def run_in_this_process(pending: list[TrialSpec], specs: list[TrialSpec], output_dir: Path, recorded: set,
                        finished: Callable[[list[dict[str, Any]]], None],
                        starting: Callable[[list[TrialSpec]], None] | None = None) -> None:
    """Runs `pending` here (the study's own process, or a worker's), one trial or one replica group at a
    time; `specs` holds every member of their groups. `finished` gets the records of each trial, or each
    group's new ones, as they are written; `starting`, each unit's members before it trains (a worker tells
    its parent, which times the unit)."""
    done_groups = set()
    for spec in pending:
        if spec.group is None:
            if starting:
                starting([spec])
            finished([run_and_record(spec, output_dir)])
        elif (spec.condition, spec.group) not in done_groups:
            done_groups.add((spec.condition, spec.group))
            members = [s for s in specs if (s.condition, s.group) == (spec.condition, spec.group)]
            if starting:
                starting(members)
            # The whole group reruns (one graph trains them all), but only missing records are written.
            finished(run_group_and_record(members, output_dir, recorded))


def with_group_members(chosen: list[TrialSpec], specs: list[TrialSpec]) -> list[TrialSpec]:
    """`chosen` and, for those in a replica group, every other member of it among `specs`, in study order."""
    groups = {(s.condition, s.group) for s in chosen if s.group is not None}
    return [s for s in specs if s in chosen or (s.group is not None and (s.condition, s.group) in groups)]


def run_group_and_record(members: list[TrialSpec], output_dir: Path, recorded: set) -> list[dict[str, Any]]:
    """Trains a replica group in this process (under other processes' load for `env:load=1`); appends the
    records of members not yet recorded."""
    results = train_unit(members)
    return [_record(spec, result, output_dir)
            for spec, result in zip(members, results, strict=True) if spec.key not in recorded]


def outcome(record: dict[str, Any]) -> Outcome:
    """A record as the console's progress shows it."""
    return Outcome(record["condition"], record["status"]["code"], record["timing"]["wall_s"])


def execute(specs: list[TrialSpec], output_dir: Path, *, isolation: str = "inprocess",
            workers: int = 1, after_each: Callable[[], None] | None = None,
            existing: list[dict[str, Any]] | None = None, executor: Executor | None = None,
            time_limit: TimeLimit | None = None) -> int:
    """Runs every spec without a record in `output_dir`; returns how many ran.

    `after_each` runs after every finished trial (e.g. publishing records to a remote study directory).
    `existing`: the records `check_resumable` already returned for these specs (not read again).
    `executor`: where trials run; local by default: this process and its worker processes.
    `time_limit`: how long a trial may train in a worker process (`TimeLimit`); given, every trial runs in one.
    """
    executor = executor or Executor()
    output_dir.mkdir(parents=True, exist_ok=True)
    if existing is None:
        existing = check_resumable(specs, output_dir)
    recorded = recorded_keys(specs, existing)
    pending = [s for s in specs if s.key not in recorded]
    if not pending:
        return 0
    here = _this_process_environment()
    if any(s.group is not None for s in pending) and isolation != "inprocess":
        raise UsageError("vectorized replicas train together in one process; use --replicas with "
                         "--isolation=inprocess")
    on_ray = executor.name == "ray"
    moved = bool(time_limit and time_limit.given)  # a trial is stopped by ending its process: not this one
    local = [s for s in pending if isolation == "inprocess" and workers == 1 and s.process_environment == here
             and not on_ray and not moved]
    elsewhere = [s for s in pending if s not in local]
    for spec in elsewhere:
        for named in (spec.config.model, spec.config.dataset):
            if user_code.is_in_process(named):
                what = "model" if named == spec.config.model else "data"
                if on_ray:
                    ray_executor.refuse_python_objects(spec.config)
                if isolation != "inprocess" or workers > 1:
                    why = "isolation=\"process\"" if isolation != "inprocess" else f"{workers} workers"
                    raise UsageError(f"{why} trains in other processes, which cannot see the {what} handed over in "
                                     "Python; name it as path/to/file.py:function (data: npz:PATH), or train in this "
                                     "process (isolation=\"inprocess\", workers=1)")
                raise UsageError(f"condition {spec.condition} needs a fresh process, which cannot see the {what} "
                                 "handed over in Python; name it as path/to/file.py:function (data: npz:PATH), or "
                                 "leave that condition out")
    # A worker gets every member of its replica groups, recorded or not: a group trains as a whole.
    progress = Progress([s.condition for s in pending], len(specs), after_each)

    def finished(records: list[dict[str, Any]]) -> None:
        progress.finished([outcome(record) for record in records])

    try:
        run_in_this_process(local, specs, output_dir, recorded, finished)
        if on_ray:
            try:
                ray_executor.run(units(with_group_members(elsewhere, specs)), recorded, executor=executor,
                                 fresh_processes=isolation == "process",
                                 reference=next(iter(existing), None),
                                 write=lambda record, arrays: write_record(record, arrays, output_dir),
                                 finished=finished,
                                 lost=lambda unit, reason: record_lost(
                                     [s for s in unit if s.key not in recorded], output_dir, reason, progress))
            except ray_executor.ClusterGone as gone:
                # The study cannot go on there; here it can (a resume checks this machine is the nodes' kind).
                recorded_now = {r.get("trial_key") for r in read_records(output_dir / TRIALS_FILE)}
                raise StudyIncomplete(
                    f"{gone}: the cluster is gone, and {sum(s.key not in recorded_now for s in pending)} trial(s) "
                    f"did not run ({output_dir / LOST_FILE}); run the same command again when it is back, or "
                    "without --executor=ray to finish the study on this machine") from None
        else:
            _run_jobs(_jobs(with_group_members(elsewhere, specs), isolation, workers), output_dir, workers, progress,
                      time_limit)
    finally:
        progress.close()
    # Trials a dead worker took with it have no record (LOST_FILE says why): they did not run.
    recorded_now = {r.get("trial_key") for r in read_records(output_dir / TRIALS_FILE)}
    return sum(spec.key in recorded_now for spec in pending)


def check_resumable(specs: list[TrialSpec], output_dir: Path, executor: Executor | None = None) -> list[dict[str, Any]]:
    """The records already in `output_dir`, once they are known to belong with `specs`: same record
    schema, same model code and data, same environment (this process's; on Ray, the trials' nodes are
    compared with them as each returns). One sentence otherwise."""
    existing = read_records(output_dir / TRIALS_FILE)
    refuse_other_schemas(existing, output_dir)
    if specs:
        refuse_changed_inputs(existing, inputs_identity(specs[0].config), output_dir)
        if not (executor and executor.name == "ray"):
            refuse_other_environments(existing, output_dir)
    return existing


def check_inputs(specs: list[TrialSpec]) -> None:
    """The data checks each trial makes before it trains (train.check_data), made for each condition's first
    trial before the study writes anything: bad input (an empty training pool, a batch larger than it) is one
    sentence with the output directory as it was, not a refusal after study.json was rewritten."""
    checked = set()
    for spec in specs:
        if spec.condition not in checked:
            checked.add(spec.condition)
            check_data(spec.config, spec.seeds)


def refuse_another_study(records: list[dict[str, Any]], manifest: dict[str, Any], output_dir: Path) -> None:
    """A study directory holds one study (its id: the base config and seeds, api.run_study). Another one run into
    it would append its trials beside the first's and replace study.json and summary.json: two studies mixed in
    one directory. Refused in one sentence naming both (and, from study.json, the settings that differ), as
    merge refuses; the same study with other conditions, repeats or --replicas is extended instead."""
    study_id = manifest["study_id"]
    then = _recorded_manifest(output_dir)
    other = then.get("study_id") if then.get("study_id") not in (None, study_id) else next(
        (record.get("study_id") for record in records if record.get("study_id") != study_id), None)
    if other is None:
        return
    differences = []
    if then.get("study_id") == other:
        before = {**(then.get("base_config") or {}), "seed": then.get("base_seed")}
        now = {**manifest["base_config"], "seed": manifest["base_seed"]}
        differences = [f"{name} {_short(before.get(name))} then, {_short(now.get(name))} now"
                       for name in sorted(set(before) | set(now))
                       if name != "determinism" and before.get(name) != now.get(name)]
    what = f" ({'; '.join(differences[:3])}{f'; {len(differences) - 3} more' if len(differences) > 3 else ''})" \
        if differences else ""
    raise UsageError(f"{output_dir} holds study {other}, and this run is study {study_id}{what}; running it there "
                     "would mix two studies in one directory: give --output_dir another directory")


def _recorded_manifest(output_dir: Path) -> dict[str, Any]:
    """The study.json a directory holds ({} without one)."""
    path = output_dir / STUDY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    document = load_document(data, str(path))
    return document if isinstance(document, dict) else {}


def _short(value: Any) -> str:
    """A setting's value in a sentence: at most 40 characters."""
    text = "unset" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def where_trials_ran(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The environment the study's trials ran in, read from a record whose condition changes no setting of it
    (control's, not env:onednn=1's); None without such a record."""
    for record in records:
        condition = condition_of(record.get("condition"))
        if not environment.settings_changed_by(dict(condition.env_vars), dict(condition.config_changes)):
            return record.get("environment")
    return None


def refuse_changed_inputs(records: list[dict[str, Any]], identity: dict[str, Any], output_dir: Path) -> None:
    """A study directory holds trials of one version of a model's code and of its data: resuming after
    either changed would mix two experiments under one study, so it is refused in one sentence."""
    model, data = identity["model"], identity["data"]
    for record in records:
        then_model, then_data = record.get("model") or {}, record.get("data") or {}
        if then_model.get("spec") == model["spec"] and then_model.get("source_sha256") != model["source_sha256"]:
            raise UsageError(f"the source of {model['spec']} changed since the trials in {output_dir} were recorded "
                             f"(sha256 {str(then_model.get('source_sha256'))[:12]} then, "
                             f"{str(model['source_sha256'])[:12]} now); study it in a new --output_dir")
        if then_data.get("spec") == data["spec"] and then_data.get("sha256") != data["sha256"]:
            raise UsageError(f"the data {data['spec']} changed since the trials in {output_dir} were recorded "
                             f"(sha256 {str(then_data.get('sha256'))[:12]} then, {data['sha256'][:12]} now); "
                             "study it in a new --output_dir")


def refuse_other_schemas(records: list[dict[str, Any]], output_dir: Path) -> None:
    """Records of another record schema (another harness version) are not adopted as this run's trials."""
    strangers = [r.get("schema") for r in records if r.get("schema") != TRIAL_SCHEMA]
    if strangers:
        raise UsageError(f"{output_dir / TRIALS_FILE} holds {strangers[0]!r} records and this harness writes "
                         f"{TRIAL_SCHEMA!r}; study in a new --output_dir (or resume with the harness version that "
                         "wrote them)")
    # A record of the right schema id but damaged (a field missing, "repeat": "zero"): found now, before a
    # trial runs, not by a summary after new records were appended beside it.
    for number, record in enumerate(records, start=1):
        errors = schema_errors(record)
        if errors:
            raise UsageError(f"{output_dir / TRIALS_FILE} record {number} is not a valid {TRIAL_SCHEMA} record "
                             f"({errors[0]}); repair or remove it (python -m harness.validate lists every problem), "
                             "or study in a new --output_dir")


def refuse_other_environments(records: list[dict[str, Any]], output_dir: Path, *,
                               thread_pools_from_config: bool = False) -> None:
    """Trials recorded where the bits come out otherwise (any of environment.BIT_SETTINGS: TF or Keras,
    CPU, GPUs, image, oneDNN, XLA flags, thread pools and thread variables) are not reruns of this run's:
    adopting them would make a reproducible configuration look irreproducible. Refused in one sentence
    naming each setting that changed, with both values. `thread_pools_from_config`: the caller trains
    with each record's own config, which sets the pools, so this process's pools do not matter."""
    if not records:
        return
    now = environment.bit_identity(environment.capture())
    for record in records:
        changes = environment_changes(record, now, thread_pools_from_config=thread_pools_from_config)
        if changes:
            what = "; ".join(f"{name} {then} then, {there} now" for name, then, there in changes)
            raise UsageError(f"the trials in {output_dir} were recorded in another environment ({what}); their "
                             "bits do not compare with this run's: resume where they ran, or study this "
                             "environment in a new --output_dir")


def _this_process_environment() -> tuple:
    import tensorflow as tf

    return ((), tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


def units(specs: list[TrialSpec]) -> list[list[TrialSpec]]:
    """`specs` as units of work, in order: each lone trial alone, each replica group's members together."""
    found: dict[object, list[TrialSpec]] = {}
    for spec in specs:
        found.setdefault((spec.condition, spec.group) if spec.group is not None else spec.key, []).append(spec)
    return list(found.values())


def _jobs(specs: list[TrialSpec], isolation: str, workers: int) -> list[list[TrialSpec]]:
    """Groups specs into worker-process jobs: one environment per job, order kept within it."""
    if isolation == "process":
        return [[spec] for spec in specs]
    environments: dict[tuple, list[list[TrialSpec]]] = {}
    units: dict[object, list[TrialSpec]] = {}  # keyed by (condition, group), or a lone trial's key
    for spec in specs:
        # A replica group is one unit of work: it trains as a whole, in one worker.
        unit_key = (spec.condition, spec.group) if spec.group is not None else spec.key
        if unit_key not in units:
            units[unit_key] = []
            environments.setdefault(spec.process_environment, []).append(units[unit_key])
        units[unit_key].append(spec)
    jobs = []
    for in_environment in environments.values():
        # Round-robin keeps each worker's share interleaved across conditions.
        parts = min(workers, len(in_environment))
        jobs.extend([spec for unit in in_environment[i::parts] for spec in unit] for i in range(parts))
    return jobs


def _run_jobs(jobs: list[list[TrialSpec]], output_dir: Path, workers: int, progress: Progress,
              time_limit: TimeLimit | None = None) -> None:
    """Runs jobs in fresh worker processes, at most `workers` at once. With a `time_limit`, a worker still
    training a trial (or a replica group) that long is ended: the unit is recorded as failed with why
    (`_record_stopped`), and the rest of its job goes on in a new worker."""
    events: queue.Queue = queue.Queue()
    waiting = list(jobs)
    running: dict[int, tuple[subprocess.Popen, list[TrialSpec]]] = {}
    training: dict[int, tuple[float, list[str]]] = {}  # by worker: when its unit's time is up, the unit's keys
    stopped: dict[int, list[str]] = {}  # by worker ended for its time limit: that unit's keys
    environments: dict[int, dict[str, Any]] = {}  # by worker: the environment it trains in, as it said
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                job = waiting.pop(0)
                process = _start_worker(job, output_dir, events)
                running[process.pid] = (process, job)
            due = [deadline for pid, (deadline, _) in training.items() if pid not in stopped]
            try:
                kind, pid, payload = events.get(timeout=max(0.0, min(due) - time.monotonic()) if due else None)
            except queue.Empty:
                for pid, (deadline, keys) in training.items():
                    if pid not in stopped and deadline <= time.monotonic():
                        stopped[pid] = keys
                        running[pid][0].kill()
                continue
            if kind == "started":
                environments[pid] = payload["environment"]
                if time_limit:
                    training[pid] = (time.monotonic() + time_limit.seconds, payload["started"])
            elif kind == "trial":
                training.pop(pid, None)
                progress.finished([Outcome(*trial) for trial in payload["trials"]])
            elif kind == "exit":
                process, job = running.pop(pid)
                training.pop(pid, None)
                if pid in stopped:
                    rest = _record_stopped(job, stopped.pop(pid), environments.get(pid), output_dir, time_limit,
                                           progress)
                    if rest:
                        waiting.insert(0, rest)
                elif process.wait() != 0:
                    _worker_died(job, output_dir, process.returncode, payload, progress)
    finally:
        for process, _ in running.values():
            process.kill()


def _record_stopped(job: list[TrialSpec], unit: list[str], worker_environment: dict[str, Any] | None,
                    output_dir: Path, time_limit: TimeLimit, progress: Progress) -> list[TrialSpec]:
    """Records the trials of a unit whose worker was ended at its time limit as failed, with why (a result
    of the trial, as a NaN loss is: a resume does not run it again), in the environment the worker said it
    trains in. Returns the rest of the job, for a new worker."""
    recorded = recorded_keys(job, read_records(output_dir / TRIALS_FILE))
    message = f"did not finish within --trial_timeout={time_limit.seconds} s: stopped (its worker process ended)"
    for spec in job:
        if spec.key in unit and spec.key not in recorded:
            result = TrialResult({"code": "error", "message": message}, timing={"wall_s": float(time_limit.seconds)})
            record = make_trial_record(config=spec.config, seeds=spec.seeds, condition=spec.condition,
                                       repeat=spec.repeat, study_id=spec.study_id, result=result,
                                       environment=worker_environment or environment.capture(),
                                       inputs=inputs_identity(spec.config))
            progress.finished([outcome(write_record(record, {}, output_dir))])
    logging.warning("a trial %s; the study goes on", message)
    return [spec for spec in job if spec.key not in unit]


def _start_worker(job: list[TrialSpec], output_dir: Path, events: queue.Queue) -> subprocess.Popen:
    env = {**os.environ, **dict(job[0].env_vars)}
    process = subprocess.Popen(
        # The worker dies with this process, which holds the directory's lock (platform/processes.py).
        [sys.executable, "-m", "harness.worker", f"--output_dir={output_dir}", f"--parent_pid={os.getpid()}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=processes.parent_death_signal())
    process.stdin.write(json.dumps([spec.to_json() for spec in job]))
    process.stdin.close()

    def read() -> None:
        for line in process.stdout:
            if line.startswith("{"):
                said = json.loads(line)
                events.put(("started" if "started" in said else "trial", process.pid, said))
        events.put(("exit", process.pid, process.stderr.read()))

    threading.Thread(target=read, daemon=True).start()
    return process


def _worker_died(job: list[TrialSpec], output_dir: Path, returncode: int, stderr: str, progress: Progress) -> None:
    """A worker that exited before finishing its trials. Bad input (exit 2 with its sentence) stops the
    study as it would in this process. Anything else (a signal, the OOM killer, a crash) is not a result
    of the trials it held: they are written to LOST_FILE with why, not to the records, and a resume
    runs them again."""
    said = [line.removeprefix("error: ") for line in stderr.splitlines() if line.startswith("error: ")]
    if returncode == 2 and said:
        raise UsageError(said[-1].rstrip("."))
    recorded = recorded_keys(job, read_records(output_dir / TRIALS_FILE))
    reason = f"worker process {exit_description(returncode)}"
    last = meaningful_lines(stderr)[-3:]
    if last:
        reason += ": " + " | ".join(line[:300] for line in last)
    unfinished = [spec for spec in job if spec.key not in recorded]
    if not unfinished:
        logging.warning("%s after recording all its trials; none is lost", reason)
        return
    record_lost(unfinished, output_dir, reason, progress)


def record_lost(unfinished: list[TrialSpec], output_dir: Path, reason: str, progress: Progress) -> None:
    """Trials whose process (a worker, a Ray task's node) died before their records: written to LOST_FILE with
    why, not to the records, and a resume runs them again."""
    for spec in unfinished:
        append_record(output_dir / LOST_FILE, {"trial_key": spec.key, "condition": spec.condition,
                                               "repeat": spec.repeat, "reason": reason,
                                               "created_at": utc_timestamp()})
        progress.finished([Outcome(spec.condition, "lost", 0.0)])
    logging.warning("%s; its %d unfinished trial(s) are in %s and a re-run retries them", reason, len(unfinished),
                    LOST_FILE)


def exit_description(returncode: int) -> str:
    """`killed by SIGKILL (the OOM killer or kill -9)`, or `exited with code 1`."""
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ \
            else f"signal {-returncode}"
        return f"killed by {name}" + (" (the OOM killer or kill -9)" if name == "SIGKILL" else "")
    return f"exited with code {returncode}"


def shard(specs: list[TrialSpec], shard_index: int, num_shards: int) -> list[TrialSpec]:
    """This shard's trials: every num_shards-th unit in plan order, so each shard interleaves all conditions.

    A unit is one trial, or a whole replica group: a group trains as one graph (and its size is part of
    its trials' keys), so it is never split across shards.
    """
    units = list(dict.fromkeys(_unit(spec) for spec in specs))
    mine = set(units[shard_index::num_shards])
    return [spec for spec in specs if _unit(spec) in mine]


def _unit(spec: TrialSpec) -> tuple:
    return (spec.condition, "group", spec.group) if spec.group is not None else ("trial", spec.key)


def study_records(specs: Iterable[TrialSpec], output_dir: Path) -> list[dict[str, Any]]:
    """The records of exactly these specs, one per trial (the first, should a trial repeat), in file order: each
    spec's record by its key, else the same trial recorded under another key (`recorded_keys`)."""
    records = read_records(output_dir / TRIALS_FILE)
    by_key: dict[Any, int] = {}
    by_identity: dict[str, int] = {}
    for index, record in enumerate(records):
        by_key.setdefault(record.get("trial_key"), index)
        by_identity.setdefault(trial_identity(record), index)
    chosen = set()
    for spec in specs:
        index = by_key.get(spec.key, by_identity.get(spec.identity))
        if index is not None:
            chosen.add(index)
    return [record for index, record in enumerate(records) if index in chosen]


def recorded_keys(specs: Iterable[TrialSpec], records: list[dict[str, Any]]) -> set[str]:
    """The keys of the specs that have a record: by key, or as the same trial (records.trial_identity) under
    another key. A trial's key holds the size of the replica group it trained in, which --replicas and, with
    --replicas=auto, the number of repeats decide; a replica's bits are its trial's alone (trial/vectorized.py,
    grouped.py), so a study extended with more repeats or run with other --replicas reuses its recorded trials
    rather than training and recording them twice."""
    keys = {record.get("trial_key") for record in records}
    identities = {trial_identity(record) for record in records}
    return {spec.key for spec in specs if spec.key in keys or spec.identity in identities}
