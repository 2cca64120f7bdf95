"""The seed-robust Optuna tuner behind `harness.tune`: its study (created, or resumed when its settings
match), the objective that scores a candidate over k seeds, and the table of the best candidates."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging

from harness.analysis import stats
from harness.errors import UsageError
from harness.table import format_table
from harness.trial.seeds import derive_seed
from harness.tuning import hyperparameters, optuna_storage, seed_scores


@contextlib.contextmanager
def removed_if_it_fails(storage_url: str, name: str) -> Iterator[None]:
    """A study this run creates and that ends in an error before any candidate completed is deleted again: a
    failed first attempt must not leave a study behind (a later `reeval` would have to pick among them)."""
    optuna = optuna_storage.import_optuna()
    storage = optuna_storage.open_storage(storage_url, create=True)
    existed = name in optuna.get_all_study_names(storage)
    try:
        yield
    except Exception:
        if not existed and name in optuna.get_all_study_names(storage):
            study = optuna.load_study(study_name=name, storage=storage)
            if not optuna_storage.completed(study):
                optuna.delete_study(study_name=name, storage=storage)
        raise


def open_study(storage_url: str, name: str, settings: dict[str, Any]):
    """Creates the study, or resumes it when its stored settings match these."""
    optuna = optuna_storage.import_optuna()
    storage = optuna_storage.open_storage(storage_url, create=True)
    direction = "maximize" if stats.higher_is_better(settings["metric"]) else "minimize"
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    stored = optuna_storage.harness_settings(study)
    if stored is None and study.trials:
        raise UsageError(f"study {name!r} in {storage_url} was not made by harness.tune; choose another --study_name")
    if stored is None:
        study.set_user_attr(optuna_storage.HARNESS_ATTR, settings)
    elif stored != settings:
        changed = sorted(key for key in settings if stored.get(key) != settings[key])
        raise UsageError(f"study {name!r} in {storage_url} was made with other settings ({', '.join(changed)}); "
                         "resume it with the same flags, or choose another --study_name")
    # Re-seeded per session from the trials so far: a resumed study does not redraw its first candidates.
    sampler_seed = derive_seed(settings["base_seed"], f"tpe#{len(study.trials)}")
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed)
    return study


def make_objective(base, settings: dict[str, Any], space, output_dir: Path, replicas):
    metric, k = settings["metric"], settings["seeds_per_trial"]

    def objective(trial) -> float:
        params = {d.name: d.suggest(trial) for d in space}
        config = hyperparameters.configured(base, params)
        records = seed_scores.run_seeds(config, settings["base_seed"], k, output_dir, replicas)
        values = seed_scores.scores(records, metric)
        trial.set_user_attr("study_id", records[0]["study_id"])
        trial.set_user_attr("scores", values)
        failed = [r["repeat"] for r in records if r["status"]["code"] != "ok"]
        if failed or any(v is None for v in values):
            # Failed by the harness (e.g. NaN loss), not by a lost heartbeat: counted as finished.
            trial.set_user_attr(optuna_storage.FAILED_SEEDS_ATTR, failed)
            logging.info("candidate %d (%s) failed on seed(s) %s", trial.number, hyperparameters.describe(params),
                         failed)
            return float("nan")
        mean = float(np.mean(values))
        trial.set_user_attr("mean", mean)
        trial.set_user_attr("sd", stats.sample_sd(values) if k > 1 else None)
        if settings["objective"] == "lcb":
            return seed_scores.pessimistic_bound(values, metric, settings["lcb_confidence"])
        return mean

    return objective


def results_table(study, metric: str, top: int = 10) -> str:
    """The best candidates so far: hyperparameters, objective, mean and SD over their seeds."""
    best_first = stats.higher_is_better(metric)
    ordered = sorted(optuna_storage.completed(study), key=lambda t: t.value, reverse=best_first)[:top]
    names = list(dict.fromkeys(name for t in ordered for name in t.params))
    fmt = lambda v: stats.format_score(v, metric)  # noqa: E731
    rows = [[t.number, *[t.params.get(n) for n in names], fmt(t.value), fmt(t.user_attrs.get("mean")),
             fmt(t.user_attrs.get("sd")) if t.user_attrs.get("sd") is not None else "-"] for t in ordered]
    return format_table(["trial", *names, "objective", "mean", "SD"], rows)
