"""Rerun one recorded trial alone and compare its fingerprints with the record's.

The check behind "bits you can rerun alone": a trial trained as a vectorized
replica (or in a worker, or under a strategy) is trained again by itself, in
a fresh process with its condition's environment, from the config and seeds
its record holds, and every fingerprint the two share is compared.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.schema import TRIAL_SCHEMA, TRIALS_FILE
from harness.studies import study_runner, unit_of_work
from harness.studies.conditions import condition as named_condition
from harness.studies.records import read_records, schema_errors
from harness.trial.config import TrialConfig
from harness.trial.fingerprints import TRIAL_FINGERPRINTS
from harness.trial.seeds import SeedSet
from harness.trial.train import inputs_identity

# The shortest key prefix accepted: with 20 hex digits in a key, 6 are unique in any real study.
MIN_KEY_PREFIX = 6


def find_record(study_dir: Path, key: str) -> dict[str, Any]:
    """The record whose trial_key is `key` or starts with it; one sentence when there is none or several."""
    path = study_dir / TRIALS_FILE
    if not path.is_file():
        raise UsageError(f"{path} does not exist; name a study directory with --input_dir")
    if len(key) < MIN_KEY_PREFIX:
        raise UsageError(f"--trial_key needs at least {MIN_KEY_PREFIX} characters of a trial key, got {key!r}")
    matches = {r["trial_key"]: r for r in read_records(path) if str(r.get("trial_key", "")).startswith(key)}
    if not matches:
        raise UsageError(f"no trial in {path} has a key starting with {key!r}")
    if len(matches) > 1:
        raise UsageError(f"{len(matches)} trials in {path} have keys starting with {key!r}; give more of the key")
    record = next(iter(matches.values()))
    # A damaged record (a field missing, "repeat": "zero") cannot say what to rerun.
    errors = schema_errors(record)
    if errors:
        raise UsageError(f"trial {record['trial_key']} in {path} is not a valid {TRIAL_SCHEMA} record ({errors[0]}); "
                         "it cannot be rerun")
    return record


def rerun_alone(study_dir: Path, key: str) -> dict[str, Any]:
    """Trains the trial `key` of `study_dir` again, alone, in a fresh process; returns
    {"record", "rerun", "rows": [(fingerprint, recorded, rerun)], "same": bool}."""
    record = find_record(study_dir, key)
    if (record.get("status") or {}).get("code") != "ok":
        raise UsageError(f"trial {record['trial_key']} did not finish ({record['status'].get('code')}); "
                         "it has no fingerprints to reproduce")
    config, seeds = TrialConfig(**record["config"]), SeedSet(**record["seeds"])
    # The rerun must meet the record on the same code, data and environment, or it proves nothing.
    study_runner.refuse_changed_inputs([record], inputs_identity(config), study_dir)
    # The rerun trains with the record's config, which sets its thread pools.
    study_runner.refuse_other_environments([record], study_dir, thread_pools_from_config=True)
    condition = named_condition(record["condition"])
    spec = unit_of_work.TrialSpec(record.get("study_id", "rerun"), record["condition"], record["repeat"],
                                  config.replace(replicas=1), seeds, condition.env_vars)
    with tempfile.TemporaryDirectory(prefix="harness-rerun-") as scratch:
        study_runner.execute([spec], Path(scratch), isolation="process")
        reruns = read_records(Path(scratch) / TRIALS_FILE)
    if not reruns:
        raise UsageError(f"the rerun of trial {record['trial_key']} wrote no record (its process died)")
    rerun = reruns[0]
    if rerun["status"]["code"] != "ok":
        raise UsageError(f"the rerun of trial {record['trial_key']} did not finish: {rerun['status'].get('message')}")
    rows = [(name, record["fingerprints"][name], rerun["fingerprints"][name]) for name in TRIAL_FINGERPRINTS
            if name in record["fingerprints"] and name in rerun["fingerprints"]]
    return {"record": record, "rerun": rerun, "rows": rows, "same": all(a == b for _, a, b in rows)}
