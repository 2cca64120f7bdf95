"""Optuna studies in real storage (a SQLite file by default), opened with one-sentence errors.

Optuna is an optional extra (`pip install .[tune]`): it is imported here, when
a program needs it, so the rest of the harness runs without it. Studies made
by `harness.tune` carry the harness's tuning settings in the study's user
attributes (`HARNESS_ATTR`), so `harness.reeval` can rebuild the exact config
and knows which seeds the tuner already used.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

from harness.errors import UsageError

HARNESS_ATTR = "harness"
SQLITE_PREFIX = "sqlite:///"
# A tuner killed mid-trial leaves it RUNNING; without a heartbeat for this long it is failed and
# retried once with the same hyperparameters (its finished seeds are reused from the records).
HEARTBEAT_S = 20
GRACE_S = 60


@functools.cache
def import_optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError("this program needs Optuna, an optional extra: pip install '.[tune]' "
                         "(make test and make bench install it)") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # The harness prints its own progress.
    # Heartbeats and their retry callback are marked experimental; they are what makes a killed tuner resumable.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def sqlite_url(path: str | Path) -> str:
    return f"{SQLITE_PREFIX}{path}"


def _sqlite_file(url: str) -> Path | None:
    return Path(url[len(SQLITE_PREFIX):]) if url.startswith(SQLITE_PREFIX) else None


def open_storage(url: str, *, create: bool):
    """An Optuna RDB storage with heartbeats; a SQLite file must exist unless `create`."""
    optuna = import_optuna()
    file = _sqlite_file(url)
    if file is not None:
        if not create and not file.is_file():
            raise UsageError(f"{url}: no such SQLite file ({file})")
        file.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as error:  # SQLAlchemy raises many kinds for a bad URL or a file that is no database.
        raise UsageError(f"cannot open Optuna storage {url}: {str(error).splitlines()[0]}") from None


def load_study(url: str, name: str | None):
    """An existing study; with no name, the storage's only study."""
    optuna = import_optuna()
    storage = open_storage(url, create=False)
    names = optuna.get_all_study_names(storage)
    if name is None:
        if len(names) != 1:
            listed = ", ".join(names) if names else "none"
            raise UsageError(f"{url} holds {len(names)} studies ({listed}); name one with --optuna_study "
                             "(study= in Python)")
        name = names[0]
    elif name not in names:
        raise UsageError(f"{url} has no study named {name!r}; it holds {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def chosen_trial(study, number: int | None):
    """The study's best trial, or trial `number`; it must have finished with a value."""
    return chosen_trials(study, number, 1)[0]


def chosen_trials(study, number: int | None, k: int) -> list:
    """The trial to re-evaluate (the best, or trial `number`) first, then the next best completed trials up
    to `k` in all, best first by the study's direction (ties: the earlier trial)."""
    complete = completed(study)
    if not complete:
        raise UsageError(f"Optuna study {study.study_name!r} has no completed trial yet")
    if len(study.directions) != 1:
        raise UsageError(f"Optuna study {study.study_name!r} optimizes {len(study.directions)} objectives; "
                         "re-evaluation needs a single-objective study")
    optuna = import_optuna()
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked = sorted(complete, key=lambda t: (sign * t.value, t.number))
    if number is None:
        # Optuna's own best trial leads (the first of equal values, as ranked here).
        chosen = study.best_trial
    else:
        found = [t for t in complete if t.number == number]
        if not found:
            raise UsageError(f"Optuna study {study.study_name!r} has no completed trial number {number}")
        chosen = found[0]
    if k > len(complete):
        raise UsageError(f"--top_k={k} asks for more trials than Optuna study {study.study_name!r} completed "
                         f"({len(complete)})")
    return [chosen, *[t for t in ranked if t.number != chosen.number][:k - 1]]


def maximizes(study) -> bool:
    return study.direction == import_optuna().study.StudyDirection.MAXIMIZE


def completed(study) -> list:
    """The study's trials that finished with a value."""
    optuna = import_optuna()
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def harness_settings(study) -> dict[str, Any] | None:
    """The tuning settings `harness.tune` stored in the study, or None for a study made elsewhere."""
    return study.user_attrs.get(HARNESS_ATTR)


# A trial the harness failed itself (a seed's loss became NaN) sets this user attribute; a trial
# failed for a lost heartbeat does not, and is retried rather than counted.
FAILED_SEEDS_ATTR = "failed_seeds"


def finished_count(study) -> int:
    """Trials that ran to an end: the ones a resumed tuner does not run again."""
    optuna = import_optuna()
    states = optuna.trial.TrialState
    return sum(t.state in (states.COMPLETE, states.PRUNED)
               or (t.state == states.FAIL and FAILED_SEEDS_ATTR in t.user_attrs) for t in study.trials)
