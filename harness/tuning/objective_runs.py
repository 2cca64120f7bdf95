"""A user's own Optuna objective, called again with a stored trial's parameters over many seeds.

`harness.reeval --objective=FILE.py:FUNCTION` re-runs exactly what the tuner
scored: the user's function, their data, split, model and metric, whatever
they are (Keras or not). Each call gets `optuna.trial.FixedTrial(params)`, so
`trial.suggest_*` returns the stored values under the user's own names, and is
seeded as a Keras user seeds a run: `keras.backend.clear_session()`, then
`keras.utils.set_random_seed(seed)` (Python, NumPy, TensorFlow and Keras).
The value is what the function returns.

Calls run in this process by default (module-level code of the user's file,
such as data made at import, then runs once for every call) or each in a
fresh process (`isolation="process"`, through `python -m harness.objective_run`).
Every call is one `harness.objective_run/1` record in OUTPUT_DIR/runs.jsonl,
keyed by objective, study, trial, parameters and seed: a killed re-evaluation
resumes, and a record made by another version of the objective's code, or in
another environment, is refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError, first_line, meaningful_lines
from harness.platform import environment
from harness.redaction import RedactingStream
from harness.schema import OBJECTIVE_RUN_SCHEMA, OBJECTIVE_RUNS_FILE
from harness.studies import ISOLATIONS
from harness.studies.records import append_record, content_id, read_records, utc_timestamp
from harness.studies.study_runner import refuse_other_environments
from harness.trial import user_code
from harness.trial.seeds import derive_seed
from harness.tuning import optuna_storage

# Seeding calls an objective may make itself; if it does, the harness's seed does not decide its run.
_SEEDING_CALLS = (("keras.utils", "set_random_seed"), ("tf.random", "set_seed"), ("np.random", "seed"),
                  ("random", "seed"))


@dataclass(frozen=True)
class Objective:
    """A user's objective function and what identifies its code."""

    spec: str
    function: Callable[..., Any]
    source_sha256: str | None

    @property
    def in_process_only(self) -> bool:
        return user_code.is_in_process(self.spec)


class _StudyRunOnImport(UsageError):
    """The objective's file starts an Optuna study when it is imported."""


def load_objective(objective: str | Callable[..., Any]) -> Objective:
    """The objective a spec (`path/to/file.py:objective`, `package.module:objective`) or a function names.

    Importing the user's file must not run their tuning study again (a script that calls
    `study.optimize` at module level would retrain every candidate and write to their storage), so
    `Study.optimize` refuses while the file is imported."""
    spec = objective if isinstance(objective, str) else user_code.register_function(objective)
    optuna = optuna_storage.import_optuna()
    where = spec.rpartition(":")[0]

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise _StudyRunOnImport(f"importing {where} runs an Optuna study (study.optimize at module level); put "
                                "that under `if __name__ == \"__main__\":` so the harness can import the objective "
                                "alone")

    original = optuna.study.Study.optimize
    optuna.study.Study.optimize = refuse
    try:
        function = user_code.resolve_function(spec, "objective")
    finally:
        optuna.study.Study.optimize = original
    return Objective(spec, function, user_code.source_sha256(spec))


def run_seeds(objective: Objective, trial_number: int, params: dict[str, Any], seeds: list[int], output_dir: Path,
              isolation: str, study: dict[str, Any], existing: dict[str, dict[str, Any]],
              on_run: Callable[[dict[str, Any]], None] | None = None, tuned: bool = True) -> list[dict[str, Any]]:
    """One trial's runs under each seed, in seed order: the ones in `existing` (by run key, from
    `check_resumable`) are reused, the others run now and are recorded one by one. `study` identifies where
    the trial came from. For the `tuned` trial (the one re-evaluated), a first call that shows the objective
    is not what the tuner called (status `error`) is bad input; a call that raises is a failed run."""
    if isolation not in ISOLATIONS:
        raise UsageError(f"unknown isolation {isolation!r}; choose one of {', '.join(ISOLATIONS)}")
    if isolation == "process" and objective.in_process_only:
        raise UsageError("a fresh process cannot see an objective handed over in Python; name it as "
                         "path/to/file.py:function for isolation='process'")
    path = output_dir / OBJECTIVE_RUNS_FILE
    runs = []
    for repeat, seed in enumerate(seeds):
        key = run_key(objective, study, trial_number, params, seed, isolation)
        record = existing.get(key)
        if record is None:
            started = time.perf_counter()
            outcome = (call_seeded(objective.function, params, trial_number, seed) if isolation == "inprocess"
                       else call_in_fresh_process(objective.spec, params, trial_number, seed))
            if tuned and repeat == 0 and outcome["status"]["code"] == "error" and not any(
                    r.get("trial") == trial_number for r in existing.values()):
                # The objective cannot be what the tuner called (it suggests a name the trial lacks, or returns
                # no number): no seed will change that. A call that raises otherwise is a failed run: a flaky
                # objective may fail on the first seed and not on the next.
                raise UsageError(f"{objective.spec} cannot be called with trial {trial_number}'s parameters as the "
                                 f"study ran it: {outcome['status']['message']}")
            record = {"schema": OBJECTIVE_RUN_SCHEMA, "run_key": key, "created_at": utc_timestamp(),
                      "objective": {"spec": objective.spec, "source_sha256": objective.source_sha256},
                      "study": study, "trial": trial_number, "params": params, "repeat": repeat, "seed": seed,
                      "isolation": isolation, "environment": environment.capture(),
                      **outcome, "wall_s": time.perf_counter() - started}
            append_record(path, record)
            if on_run:
                on_run(record)
        runs.append(record)
    return runs


def run_key(objective: Objective, study: dict[str, Any], trial_number: int, params: dict[str, Any], seed: int,
            isolation: str) -> str:
    """One call of the objective: the same code, trial, parameters, seed and isolation give the same key."""
    return content_id({"objective": objective.spec, "source_sha256": objective.source_sha256, "study": study,
                       "trial": trial_number, "params": params, "seed": seed, "isolation": isolation}, length=20)


def check_resumable(path: Path, objective: Objective, output_dir: Path) -> list[dict[str, Any]]:
    """The runs already recorded in `path`, once they are known to belong with this re-evaluation: the same
    record kind, the objective's code unchanged, the same environment. One sentence otherwise."""
    existing = read_records(path)
    for record in existing:
        if record.get("schema") != OBJECTIVE_RUN_SCHEMA:
            raise UsageError(f"{path} holds {record.get('schema')!r} records, not {OBJECTIVE_RUN_SCHEMA!r}; "
                             "re-evaluate in a new --output_dir")
        then = record.get("objective") or {}
        if then.get("spec") == objective.spec and then.get("source_sha256") != objective.source_sha256:
            raise UsageError(f"the source of {objective.spec} changed since the runs in {output_dir} were recorded "
                             f"(sha256 {str(then.get('source_sha256'))[:12]} then, "
                             f"{str(objective.source_sha256)[:12]} now); re-evaluate it in a new --output_dir")
    refuse_other_environments(existing, output_dir)
    return existing


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """What the objective prints (Keras progress bars, its own prints), into `log` rather than between the
    harness's lines; appended, so a resumed re-evaluation keeps the earlier runs' output. Secrets redacted, as in
    every file the harness writes."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as file:
        output = RedactingStream(file)
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            yield


@contextlib.contextmanager
def seeding_watch() -> Iterator[list[dict[str, Any]]]:
    """Notes every seeding call made while it is held (with the user's line that made it): an objective
    that seeds itself decides its own randomness, whatever seed the harness gave it."""
    import keras
    import tensorflow as tf

    owners = {"keras.utils": keras.utils, "tf.random": tf.random, "np.random": np.random, "random": random}
    calls: list[dict[str, Any]] = []
    depth = [0]  # keras.utils.set_random_seed calls the others: only the outermost call counts
    originals = []
    for owner_name, attribute in _SEEDING_CALLS:
        owner = owners[owner_name]
        original = getattr(owner, attribute)
        originals.append((owner, attribute, original))

        def seeding(*args: Any, _original: Any = original, _name: str = f"{owner_name}.{attribute}",
                    **kwargs: Any) -> Any:
            if depth[0] == 0:
                seed = args[0] if args else kwargs.get("seed")
                calls.append({"call": _name, "seed": seed if isinstance(seed, (int, type(None))) else str(seed),
                              "line": _caller_line()})
            depth[0] += 1
            try:
                return _original(*args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(owner, attribute, seeding)
    try:
        yield calls
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)


_HARNESS_DIR = str(Path(__file__).resolve().parents[1])


def _caller_line() -> str | None:
    """`file.py:12`: the innermost frame outside the harness and the installed libraries (the user's code)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        name = frame.filename
        if "site-packages" in name or name.startswith((_HARNESS_DIR, "<")):
            continue
        return f"{Path(name).name}:{frame.lineno}"
    return None


def call_seeded(function: Callable[..., Any], params: dict[str, Any], trial_number: int, seed: int) -> dict[str, Any]:
    """One call of the objective in this process, seeded as a Keras user seeds a run. Returns the record's
    outcome: value (None unless a finite number came back), status, and the seeding calls it made itself."""
    import keras

    optuna = optuna_storage.import_optuna()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    with seeding_watch() as reseeded:
        try:
            # An objective that calls sys.exit or os._exit, or raises its own KeyboardInterrupt, fails its run
            # with a sentence instead of ending the re-evaluation (a real Ctrl-C still stops it).
            with user_code.guarded("the objective", "on this call", failure=_LeftTheProcess):
                returned = function(optuna.trial.FixedTrial(params, number=trial_number))
        except _LeftTheProcess as error:
            return _outcome(None, "failed", str(error).rstrip("."), reseeded)
        except optuna.TrialPruned:
            return _outcome(None, "pruned", "the objective raised TrialPruned", reseeded)
        except Exception as error:  # noqa: BLE001 - the user's code: any failure becomes one sentence
            if _is_missing_parameter(error):
                return _outcome(None, "error", f"it suggests a parameter the trial does not hold "
                                               f"({first_line(error)})", reseeded)
            return _outcome(None, "failed", f"{type(error).__name__}: {first_line(error)}", reseeded)
    return _checked_value(returned, reseeded)


class _LeftTheProcess(Exception):
    """The objective tried to end the process (user_code.guarded's failure)."""


def _is_missing_parameter(error: BaseException) -> bool:
    # FixedTrial's way of saying the objective suggests a name the stored trial does not have.
    return isinstance(error, ValueError) and "is not found" in str(error) and "parameter" in str(error)


def _checked_value(returned: Any, reseeded: list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(returned, (list, tuple)):
        return _outcome(None, "error", f"it returned {len(returned)} values; re-evaluation needs one number",
                        reseeded)
    try:
        value = float(returned)
    except (TypeError, ValueError):
        return _outcome(None, "error", f"it returned {type(returned).__name__}, not a number", reseeded)
    if not math.isfinite(value):
        return _outcome(None, "failed", f"it returned {value}", reseeded)
    return _outcome(value, "ok", None, reseeded)


def _outcome(value: float | None, code: str, message: str | None, reseeded: list[dict[str, Any]]) -> dict[str, Any]:
    return {"value": value, "status": {"code": code, "message": message}, "reseeded": reseeded}


def call_in_fresh_process(spec: str, params: dict[str, Any], trial_number: int, seed: int) -> dict[str, Any]:
    """One call of the objective in a fresh Python process (`python -m harness.objective_run`)."""
    harness_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (harness_root, os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "harness.objective_run", spec, json.dumps(params), str(trial_number), str(seed)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        said = meaningful_lines(result.stderr) or [f"exit code {result.returncode}"]
        return _outcome(None, "failed", f"its process died: {said[-1]}", [])
    return json.loads(lines[-1])


def worker_main(argv: list[str]) -> None:
    """`python -m harness.objective_run SPEC PARAMS_JSON TRIAL SEED`: one seeded call, its outcome as a JSON line."""
    spec, params, trial_number, seed = argv
    try:
        objective = load_objective(spec)
    except UsageError as error:
        print(json.dumps(_outcome(None, "error", str(error), [])), flush=True)
        return
    outcome = call_seeded(objective.function, json.loads(params), int(trial_number), int(seed))
    print(json.dumps(outcome), flush=True)


def values(runs: list[dict[str, Any]]) -> list[float | None]:
    """Each run's value, None where it failed."""
    return [r["value"] if r["status"]["code"] == "ok" else None for r in runs]


def seeds_for(base_seed: int, n: int) -> list[int]:
    """The seeds of the N calls, derived from the base seed by hash (each is in its record, so a user can
    repeat one call by hand with keras.utils.set_random_seed(seed)). Not 0, 1, 2, ...: those are the seeds
    people tune with (a study run after set_random_seed(0) would see its own tuning seed again), and one
    short run of neighbouring seeds can draw alike (NumPy's first normal draw after seeds 0 to 19 averages
    +0.58, three standard errors from 0)."""
    return [derive_seed(base_seed, f"objective#{r}") for r in range(n)]


def reseeding_findings(runs: list[dict[str, Any]], spec: str) -> list[str]:
    """What an objective that seeds itself means for the runs: its own call, not the harness's seed, decides."""
    calls = dict.fromkeys(f"{c['call']}({c['seed']}) at {c['line'] or '?'}" for r in runs for c in r["reseeded"])
    if not calls:
        return []
    return [f"{spec} makes its own seeding call ({', '.join(calls)}) after the harness seeds each run, so that "
            "call decides what it seeds; the spread above is what its own seeding leaves free."]
