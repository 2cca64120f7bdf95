"""A study's unit of work, shared by everything that runs trials: a trial's spec (TrialSpec), training one
unit of them in this process (a lone trial, or a replica group whole) and the record it makes there, and
reading which condition and environment a record names. The study runner (studies/study_runner.py), its
worker processes (harness/worker.py) and Ray tasks (studies/ray_executor.py) all import it from here, one
floor below each of them, so neither imports the other back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.platform import environment, processes
from harness.studies.background_load import busy_cores
from harness.studies.conditions import CONTROL, Condition
from harness.studies.conditions import condition as named_condition
from harness.studies.records import make_trial_record, trial_identity, trial_key
from harness.trial import grouped, resume, vectorized
from harness.trial.config import TrialConfig
from harness.trial.seeds import SeedSet
from harness.trial.train import TrialResult, inputs_identity, run_trial


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """Everything needed to run one trial of a study, in any process."""

    study_id: str
    condition: str
    repeat: int
    config: TrialConfig
    seeds: SeedSet
    env_vars: tuple[tuple[str, str], ...] = ()
    # Trials of one condition with the same group number train together as vectorized replicas.
    group: int | None = None

    @property
    def key(self) -> str:
        return trial_key(self.config, self.seeds, self.condition, self.repeat)

    @property
    def identity(self) -> str:
        """The trial whatever its key (records.trial_identity): its study, condition, repeat and seeds."""
        return trial_identity({"study_id": self.study_id, "condition": self.condition, "repeat": self.repeat,
                               "seeds": self.seeds.as_dict()})

    @property
    def process_environment(self) -> tuple:
        """Trials with equal values can share a process; others cannot."""
        return (self.env_vars, self.config.intra_op_threads, self.config.inter_op_threads)

    def to_json(self) -> dict[str, Any]:
        return {"study_id": self.study_id, "condition": self.condition, "repeat": self.repeat,
                "config": self.config.as_dict(), "seeds": self.seeds.as_dict(),
                "env_vars": [list(pair) for pair in self.env_vars], "group": self.group}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(data["study_id"], data["condition"], data["repeat"], TrialConfig(**data["config"]),
                   SeedSet(**data["seeds"]), tuple(tuple(pair) for pair in data["env_vars"]), data.get("group"))


def replica_path(config: TrialConfig) -> str:
    """Which kind of replica group trials of this config train in: `stacked` (the built-in MLPs' weights
    stacked, harness/trial/vectorized.py) or `grouped` (any model, one trainable per replica,
    harness/trial/grouped.py)."""
    return "stacked" if vectorized.supports(config) else "grouped"


def train_unit(members: list[TrialSpec]) -> list[TrialResult]:
    """Trains one unit of work in this process: a lone trial, or a replica group whole (one graph trains
    them all), under other processes' load for `env:load=1`; each member's result, in order."""
    with _load_of(members[0].condition):
        if members[0].group is None and members[0].config.resume_epoch:
            return [run_resumed(members[0])]
        if members[0].group is None:
            return [run_trial(members[0].config, members[0].seeds)]
        run = vectorized.run_replicas if replica_path(members[0].config) == "stacked" else grouped.run_grouped
        return run([m.config for m in members], [m.seeds for m in members])


def run_resumed(spec: TrialSpec) -> TrialResult:
    """A `resume` trial (trial/resume.py): trained to its epoch here, checkpointed into a temporary directory,
    finished by a fresh worker process restored from the checkpoint, whose result (with its restart-replay
    verdict) is the trial's."""
    with tempfile.TemporaryDirectory(prefix="harness-resume-") as directory:
        return resume.run(spec.config, spec.seeds, lambda where: _finish_in_fresh_process(spec, where), Path(directory))


def _finish_in_fresh_process(spec: TrialSpec, directory: Path) -> TrialResult:
    done = subprocess.run(
        [sys.executable, "-m", "harness.worker", "--resume_from", f"--output_dir={directory}",
         f"--parent_pid={os.getpid()}"],
        input=json.dumps([spec.to_json()]), capture_output=True, text=True, env={**os.environ, **dict(spec.env_vars)},
        preexec_fn=processes.parent_death_signal())
    if done.returncode != 0 or not (directory / resume.RESULT_FILE).exists():
        said = [line for line in done.stderr.splitlines() if line.strip()]
        return TrialResult({"code": "error", "message": f"the fresh process resuming from the checkpoint ended with "
                            f"exit code {done.returncode}: {said[-1] if said else 'it said nothing'}"})
    return resume.read_result(directory)


def _load_of(condition: str):
    """The load a condition's trials train under: every core busy for `env:load=1`, else none."""
    return busy_cores() if condition_of(condition).background_load else contextlib.nullcontext()


def make_record(spec: TrialSpec, result: TrialResult) -> dict[str, Any]:
    """A trial's record, made where it trained: the environment, model code and data it names are that
    process's (on a Ray cluster, that node's)."""
    return make_trial_record(config=spec.config, seeds=spec.seeds, condition=spec.condition,
                             repeat=spec.repeat, study_id=spec.study_id, result=result,
                             environment=environment.capture(), inputs=inputs_identity(spec.config))


def environment_changes(record: dict[str, Any], reference: dict[str, str], *,
                        thread_pools_from_config: bool = False) -> tuple[tuple[str, str, str], ...]:
    """(setting, the record's value, the reference's) for each bit setting in which `record` differs from the
    `reference` identity (environment.bit_identity), leaving out what the record's condition sets itself
    (env:onednn=0's TF_ENABLE_ONEDNN_OPTS, env:threads=1's pools), which differs by design."""
    then = environment.bit_identity(record.get("environment") or {})
    condition = condition_of(record.get("condition"))
    by_design = environment.settings_changed_by(dict(condition.env_vars), dict(condition.config_changes))
    if thread_pools_from_config:
        by_design.update(environment.THREAD_SETTINGS)
    return tuple((name, then.get(name, "not recorded"), value) for name, value in reference.items()
                 if name not in by_design and then.get(name) != value)


def condition_of(name: str | None) -> Condition:
    """The condition a record or spec names; an unknown name (another version's) or none (a record of a re-run
    objective) is treated as control."""
    if not isinstance(name, str):
        return named_condition(CONTROL)
    try:
        return named_condition(name)
    except (UsageError, TypeError):
        return named_condition(CONTROL)
