"""A study from Python: `harness.study(model=create_model, data=(x_train, y_train, x_test, y_test), ...)`.

    import harness
    result = harness.study(model=create_model, data=(x_train, y_train, x_test, y_test),
                           conditions=["control", "init", "dropout", "all"], repeats=10, epochs=20)
    print(result)                                    # what `harness.bench` prints: the answer in short, table, findings
    assert result.condition("control").bitwise_reproducible
    harness.rerun(result.output_dir, "3f2a9c")["same"]  # a recorded trial (its key's first characters), rerun alone
    harness.reeval(objective=objective, storage="sqlite:///study.db")["expected_drop"]  # was my Optuna result luck?

The same study as `python -m harness.bench` (which calls `run_study` below):
the same plan, records (`trials.jsonl`), `summary.json`, TensorBoard curves
and resumption. Functions and arrays handed over as Python objects live in
this process only, so conditions that need a fresh process (`env:threads=N`,
`env:onednn=0|1`) need the model and data named as specs instead
(`model="my_model.py:create_model"`, `data="npz:data.npz"`).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.analysis.summary import format_summary, summarize_study, write_summary
from harness.errors import UsageError
from harness.platform import determinism, environment
from harness.redaction import redact
from harness.schema import LOST_FILE, STUDY_FILE, STUDY_SCHEMA, SUMMARY_FILE, TRIALS_FILE
from harness.studies import (
    EXECUTORS,
    ISOLATIONS,
    MAX_GPUS_PER_TRIAL,
    MAX_TRIAL_TIMEOUT_S,
    MAX_TRIALS_EACH,
    MAX_WORKERS,
    Executor,
    determinism_cost,
    ray_executor,
    refuse_ray_settings_without_ray,
    study_runner,
    unit_of_work,
)
from harness.studies import conditions as conditions_lib
from harness.studies.progress import phase
from harness.studies.records import content_id, read_records, write_json
from harness.studies.storage import StudyDir, exclusive, shard_dir_name
from harness.trial import user_code, user_data
from harness.trial.config import (
    CONFIG_FIELDS,
    DEFAULT_BENCHMARK,
    DEFAULT_COST_BLOCKS,
    MAX_COST_BLOCKS,
    MIN_COST_BLOCKS,
    MODELS,
    TrialConfig,
    load_benchmark,
    said_value,
    user_model_config,
)
from harness.trial.seeds import MAX_BASE_SEED, SeedSet


@dataclasses.dataclass
class StudyRun:
    """What running a study did: its summary, where its files are, and how many trials ran now."""

    summary: dict[str, Any]
    directory: StudyDir
    ran: int
    trials_in_shard: int
    wall_s: float
    # Trials of this shard that had a record before this run (not those lost now, which have none).
    already_recorded: int = 0
    # Why each trial of this shard that has no record is missing (a worker died); a re-run retries them.
    lost: list[str] = dataclasses.field(default_factory=list)
    # With replicas other than 1: the conditions that trained one at a time anyway, each with the reason.
    alone: dict[str, str] = dataclasses.field(default_factory=dict)


def run_study(base: TrialConfig, base_seed: int, seeds: SeedSet, chosen: list[conditions_lib.Condition],
              repeats: int, output_dir: str, *, replicas: int | str = "auto", isolation: str = "inprocess",
              workers: int = 1, shard_index: int = 0, num_shards: int = 1,
              cost_blocks: int = DEFAULT_COST_BLOCKS, executor: Executor | None = None,
              trial_timeout: int | None = None) -> StudyRun:
    """Plans the study, runs the trials without a record yet, and writes its manifest and summary.

    `replicas="auto"` vectorizes where a process trains more than one trial and the study is whole: with a
    fresh process per trial, or shards (which split a study by trials, and keep their share even), it means
    one trial at a time. Several workers each train whole replica groups. `cost_blocks`: blocks per setting, in each
    unit, of the interleaved cost measurement (studies/determinism_cost.py; 0: none), run in shard 0. `executor`: where
    the trials run (this machine by default; a Ray cluster: harness/studies/ray_executor.py). `trial_timeout`:
    seconds a trial may train (0: none; None: study_runner.time_limit_of's default)."""
    check_cost_blocks(cost_blocks)
    time_limit = study_runner.time_limit_of(base, trial_timeout)
    if time_limit and time_limit.given and executor and executor.name == "ray":
        raise UsageError("--trial_timeout stops a trial by ending its worker process on this machine, and a Ray task "
                         "is not stopped that way; leave it out with --executor=ray")
    if executor:
        executor.check([base])  # before anything is written
    if replicas == "auto" and (isolation != "inprocess" or num_shards > 1):
        replicas = 1
    # Before any op runs: trials with these thread pools can then share this process.
    determinism.set_thread_pools(base.intra_op_threads, base.inter_op_threads)
    location = output_dir.rstrip("/")
    if num_shards > 1:
        # Every shard writes its own records; `harness.merge` builds the study's summary.
        location = f"{location}/{shard_dir_name(shard_index, num_shards)}"
    # The study is its base config and seeds: adding conditions or repeats later extends the same study, and its
    # records are reused (study_runner.recorded_keys); another study is refused (refuse_another_study).
    study_id = content_id({"config": base.replace(determinism=True).as_dict(), "base_seed": base_seed,
                           "seeds": seeds.as_dict()})
    started = time.perf_counter()
    planned = study_runner.plan(base, base_seed, seeds, chosen, repeats, study_id, replicas)
    specs = study_runner.shard(planned, shard_index, num_shards)
    study_runner.check_inputs(specs)  # Bad input is refused before the directory is made or a file in it changed.
    study_dir = StudyDir(location)
    with exclusive(study_dir.local):  # One run writes a study directory at a time.
        existing = study_runner.check_resumable(specs, study_dir.local, executor)  # Before study.json is rewritten.
        manifest = {"schema": STUDY_SCHEMA, "study_id": study_id, "benchmark": base.benchmark,
                    "base_config": redact(base.as_dict()), "base_seed": base_seed, "base_seeds": seeds.as_dict(),
                    "conditions": [c.name for c in chosen], "repeats": repeats, "shard_index": shard_index,
                    "num_shards": num_shards, "trials_planned": len(planned), "trials_in_shard": len(specs),
                    # What changes the bits where the study runs; a resume elsewhere is refused (study_runner).
                    "environment": environment.bit_identity(environment.capture())}
        study_runner.refuse_another_study(existing, manifest, study_dir.local)
        write_json(study_dir.local / STUDY_FILE, manifest)
        ran = study_runner.execute(specs, study_dir.local, isolation=isolation, workers=workers, executor=executor,
                                   after_each=study_dir.push, existing=existing, time_limit=time_limit)
        wall_s = time.perf_counter() - started
        records = study_runner.study_records(specs, study_dir.local)
        # The cost is the study's, not a shard's: shard 0 measures it, and merge carries it. Measured, and the
        # summary's environment read, where the trials ran: on Ray, the nodes (every record's, ray_executor
        # checks), not this process's machine.
        ran_in, identity, measure = environment.capture(), manifest["environment"], None
        if executor and executor.name == "ray":
            ran_in = study_runner.where_trials_ran(records) or ran_in
            identity = environment.bit_identity(ran_in)
            measure = functools.partial(ray_executor.measure_cost, executor=executor)
        cost = determinism_cost.ensure(base, seeds, chosen, study_dir.local, study_id, cost_blocks, identity,
                                       measure) if shard_index == 0 else None
        phase(f"summarizing {len(records)} trial records (intervals, per-example churn) and writing summary.json "
              "and the TensorBoard curves")
        summary = summarize_study(manifest, records, ran_in, wall_s, study_dir.local, cost)
        write_summary(study_dir.local / SUMMARY_FILE, summary)
        study_dir.push(with_curves=True)
        recorded = study_runner.recorded_keys(specs, records)
        lost = [spec for spec in specs if spec.key not in recorded]
        alone = study_runner.alone_reasons(specs, auto=replicas == "auto") if replicas != 1 else {}
        before = study_runner.recorded_keys(specs, existing)
        return StudyRun(summary, study_dir, ran, len(specs), wall_s, sum(spec.key in before for spec in specs),
                        lost_reasons(lost, study_dir.local), alone)


def check_cost_blocks(blocks: int) -> None:
    if not _whole(blocks) or blocks != 0 and not MIN_COST_BLOCKS <= blocks <= MAX_COST_BLOCKS:
        raise UsageError(f"cost_blocks must be 0 (no cost measurement) or {MIN_COST_BLOCKS} to {MAX_COST_BLOCKS}: "
                         f"fewer paired blocks give an interval too wide to say anything; got {said_value(blocks)}")


def check_whole_number(name: str, value: Any, lowest: int, highest: int) -> None:
    """An argument of harness.study that its flag takes as an integer, within that flag's bounds (the same
    constants), refused in one sentence as the flag would be: not a TypeError or a study planned for minutes."""
    if not _whole(value) or not lowest <= value <= highest:
        raise UsageError(f"{name} must be a whole number from {lowest:,} to {highest:,}, got {said_value(value)}")


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def lost_reasons(lost: list[unit_of_work.TrialSpec], directory: Path) -> list[str]:
    """Why each planned trial without a record is missing (LOST_FILE's latest reason for it)."""
    reasons = {entry.get("trial_key"): entry.get("reason") for entry in read_records(directory / LOST_FILE)}
    return [reasons.get(spec.key) or "no record and no reason written" for spec in lost]


@dataclasses.dataclass(frozen=True)
class ConditionResult:
    """One condition's row of the summary, with its verdicts as attributes."""

    name: str
    varies: str
    n_ok: int
    n_failed: int
    metric: str
    mean: float | None
    sd: float | None
    sd_ci95: list[float] | None
    unique_weight_hashes: int
    bitwise_reproducible: bool | None
    matches_control_bitwise: bool | None
    sd_share_of_all: float | None
    mean_pairwise_disagreement: float | None
    row: dict[str, Any]  # every figure summary.json holds for the condition


class StudyResult:
    """A finished study: `print(result)` shows its answer in short, table and findings; `result.condition(name)`
    its verdicts."""

    def __init__(self, summary: dict[str, Any], output_dir: Path, lost: Sequence[str] = (),
                 alone: dict[str, str] | None = None) -> None:
        self.summary = summary
        self.output_dir = output_dir
        # Why each trial a dead worker process took with it is missing; calling study() again retries them.
        self.lost = list(lost)
        # The conditions that trained one at a time, not in replica groups, each with the reason.
        self.alone = dict(alone or {})
        self.metric = summary["primary_metric"]

    @property
    def records_path(self) -> Path:
        return self.output_dir / TRIALS_FILE

    @property
    def summary_path(self) -> Path:
        return self.output_dir / SUMMARY_FILE

    @property
    def table(self) -> str:
        return format_summary(self.summary)

    @property
    def findings(self) -> list[str]:
        return list(self.summary["findings"])

    @property
    def conditions(self) -> list[str]:
        return [row["name"] for row in self.summary["conditions"]]

    def condition(self, name: str) -> ConditionResult:
        row = next((row for row in self.summary["conditions"] if row["name"] == name), None)
        if row is None:
            raise KeyError(f"the study has no condition {name!r}; it has {', '.join(self.conditions)}")
        described = row[self.metric] or {}
        return ConditionResult(
            name=name, varies=row["varies"], n_ok=row["n_ok"], n_failed=row["n_failed"], metric=self.metric,
            mean=described.get("mean"), sd=described.get("sd"), sd_ci95=described.get("sd_ci95"),
            unique_weight_hashes=row["unique_weight_hashes"], bitwise_reproducible=row["bitwise_reproducible"],
            matches_control_bitwise=row["matches_control_bitwise"], sd_share_of_all=row["sd_share_of_all"],
            mean_pairwise_disagreement=row["mean_pairwise_disagreement"], row=row)

    def to_dataframe(self) -> Any:
        """The table as a pandas DataFrame, a row per condition (pandas must be installed)."""
        try:
            import pandas
        except ImportError:
            raise UsageError("to_dataframe() needs pandas: pip install pandas") from None
        rows = [{key: value for key, value in dataclasses.asdict(self.condition(name)).items() if key != "row"}
                for name in self.conditions]
        return pandas.DataFrame(rows).set_index("name")

    def __str__(self) -> str:
        return self.table

    def __repr__(self) -> str:
        return f"<StudyResult {self.summary['benchmark']}: {', '.join(self.conditions)}; records in {self.output_dir}>"


def study(model: Callable[..., Any] | str, data: Any = None, *, conditions: Sequence[str] | str | None = None,
          repeats: int = 10, output_dir: str | None = None, seed: int = 0, benchmark: str | None = None,
          replicas: int | str = "auto", isolation: str = "inprocess", workers: int = 1,
          cost_blocks: int = DEFAULT_COST_BLOCKS, executor: str = "local", ray_address: str | None = None,
          ray_gpus_per_trial: float = 0.0, ray_resources: Mapping[str, float] | None = None,
          trial_timeout: int | None = None, **settings: Any) -> StudyResult:
    """Runs a variance study of a model and returns its result.

    `model`: a function returning a Keras model (compiled or not), a spec string (`file.py:function`,
    `package.module:function`) or a built-in model name. `data`: (x_train, y_train, x_test, y_test),
    ((x_train, y_train), (x_test, y_test)), (x, y), a dict of those arrays (each x one array, or several
    inputs: a dict by input name or a tuple by position), or a data spec string
    (`npz:PATH`, `csv:PATH`, `file.py:function`, `tfds:NAME`, a built-in name). `settings`: any trial
    setting (epochs=, batch_size=, learning_rate=, model_args=, validation_fraction=, ...). `cost_blocks`: blocks
    per setting in each unit of the interleaved measurement of determinism's cost (0: none; summary's determinism_cost).
    `executor="ray"`: each trial a Ray task on the cluster at `ray_address` (default $RAY_ADDRESS, else a Ray
    instance started here), with `ray_gpus_per_trial` GPUs and the custom Ray `ray_resources` ({name: amount},
    marking one kind of node) each; the model and data then name files. `trial_timeout`: seconds a trial may
    train before it is stopped and recorded as failed (bench's --trial_timeout; every trial then runs in a worker
    process, so the model and data name files; 0: no limit).
    """
    unknown = sorted(set(settings) - set(CONFIG_FIELDS) - {"benchmark"})
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r}; settings are {', '.join(CONFIG_FIELDS)}")
    # The bounds of the flags of the same names (bench's --repeats, --seed, --workers), before anything is built.
    check_whole_number("repeats", repeats, 1, MAX_TRIALS_EACH)
    check_whole_number("seed", seed, 0, MAX_BASE_SEED)
    check_whole_number("workers", workers, 1, MAX_WORKERS)
    if trial_timeout is not None:
        check_whole_number("trial_timeout", trial_timeout, 0, MAX_TRIAL_TIMEOUT_S)
    check_cost_blocks(cost_blocks)
    if output_dir is not None:
        if not isinstance(output_dir, str | os.PathLike):
            raise UsageError(f"output_dir must name a directory (a str or a path), got {said_value(output_dir)}")
        output_dir = os.fspath(output_dir)
        if not output_dir.strip():
            raise UsageError("output_dir names no directory (leave it out for the default, results/BENCHMARK)")
    if benchmark is not None and not isinstance(benchmark, str):
        raise UsageError(f"benchmark must be a benchmark's name (a str), got {said_value(benchmark)}")
    if ray_address is not None and not isinstance(ray_address, str):
        raise UsageError(f"ray_address must be HOST:PORT (a str), got {said_value(ray_address)}")
    if isolation not in ISOLATIONS:
        raise UsageError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    if executor not in EXECUTORS:
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    refuse_ray_settings_without_ray(executor, [name for name, value in (
        ("ray_address", ray_address), ("ray_gpus_per_trial", ray_gpus_per_trial), ("ray_resources", ray_resources))
        if value], 'executor="ray"')
    if isinstance(ray_gpus_per_trial, bool) or not isinstance(ray_gpus_per_trial, int | float) \
            or not 0 <= ray_gpus_per_trial <= MAX_GPUS_PER_TRIAL:  # a NaN fails both
        raise UsageError(f"ray_gpus_per_trial must be a number from 0 to {MAX_GPUS_PER_TRIAL:g}, got "
                         f"{ray_gpus_per_trial!r}")
    if not isinstance(ray_resources, Mapping | None):
        raise UsageError(f"ray_resources must be a dict of resource name to amount, got a "
                         f"{type(ray_resources).__name__}")
    resources = ray_executor.checked_resources((ray_resources or {}).items(), "ray_resources")
    if not isinstance(model, str) and not callable(model) or _is_keras_model(model):
        raise UsageError(f"model must be a function that returns a Keras model (each trial builds its own, under "
                         f"its init seed), or a spec string; got a {type(model).__name__} object")
    model_spec = model if isinstance(model, str) else user_code.register_function(model)
    fields = dict(settings, model=model_spec)
    if data is not None:
        fields["dataset"] = user_data.from_python(data)
    if benchmark or model_spec in MODELS:
        base = load_benchmark(benchmark or DEFAULT_BENCHMARK, **fields)
    else:
        base = user_model_config(**fields)
    output_dir = output_dir or f"results/{base.benchmark}"
    time_limit = study_runner.time_limit_of(base, trial_timeout)
    study_runner.refuse_python_objects_with_a_time_limit(base, time_limit)
    study_runner.probe_apart(base, output_dir, isolation, workers, time_limit)
    chosen = _conditions(conditions, base)
    replicas = study_runner.parse_replicas(str(replicas))
    run = run_study(base, seed, SeedSet.from_base(seed), chosen, repeats, output_dir,
                    replicas=replicas, isolation=isolation, workers=workers, cost_blocks=cost_blocks,
                    executor=Executor(executor, ray_address, ray_gpus_per_trial, resources),
                    trial_timeout=trial_timeout)
    return StudyResult(run.summary, run.directory.local, run.lost, run.alone)


def rerun(study_dir: str | Path, trial_key: str) -> dict[str, Any]:
    """Trains one recorded trial of a study again, alone, in a fresh process, and compares its fingerprints
    with the record's (`python -m harness.rerun`). Returns {"same": bool, "rows": [(fingerprint, recorded,
    rerun)], "record", "rerun"}. `trial_key`: the record's key or its first characters (at least 6)."""
    from harness.studies.rerun import rerun_alone

    return rerun_alone(Path(study_dir), trial_key)


def reeval(objective: Callable[..., Any] | str, storage: str, *, study: str | None = None, trial: int | None = None,
           top_k: int = 1, seeds: int = 20, base_seed: int = 0, isolation: str = "inprocess",
           tuned_score: float | None = None, output_dir: str | None = None) -> dict[str, Any]:
    """Was my Optuna result luck? Calls your objective (a function taking an Optuna trial, or its spec
    `file.py:objective`) with the study's best trial's parameters (or trial number `trial`) over `seeds`
    seeds, each after keras.utils.set_random_seed(seed), as `python -m harness.reeval --objective` does.

    Returns the comparison: `better_than_share` (where the tuned value falls among the re-runs),
    `expected_drop` and `expected_drop_ci95` (what re-running loses, positive when it does worse),
    `findings` (the same in words), and with `top_k` > 1, `top_k`: the K best trials over the same seeds
    and whether the tuner's pick still wins. Runs and summary.json are written to `output_dir`.
    `isolation="process"` calls the objective in a fresh process each time (it needs a spec string then)."""
    from harness.tuning.objective_reevaluation import reevaluate

    if isolation not in ISOLATIONS:
        raise UsageError(f"isolation must be one of {', '.join(ISOLATIONS)}, got {isolation!r}")
    return reevaluate(objective, storage=storage, study=study, trial=trial, top_k=top_k, seeds=seeds,
                      base_seed=base_seed, isolation=isolation, tuned_score=tuned_score,
                      output_dir=output_dir)["comparison"]


def _is_keras_model(value: Any) -> bool:
    import keras

    return isinstance(value, keras.Model)


def _conditions(conditions: Sequence[str] | str | None, base: TrialConfig) -> list[conditions_lib.Condition]:
    if conditions is None:
        return conditions_lib.default_conditions(base)
    names = [conditions] if isinstance(conditions, str) else conditions
    if not isinstance(names, Sequence) or not all(isinstance(name, str) for name in names):
        wrong = next((name for name in names if not isinstance(name, str)), None) \
            if isinstance(names, Sequence) else names
        raise UsageError(f"conditions must be condition names (strings), got {said_value(wrong)}")
    text = ",".join(names)
    return conditions_lib.parse_conditions(text)
