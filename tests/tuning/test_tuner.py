"""The seed-robust Optuna tuner (`harness.tune`): runs, resumes from SQLite, and its best trial re-evaluates."""

import json

import optuna
import pytest
from conftest import SCORING_FLAGS, run_program

from harness.studies.records import read_records, schema_errors


def _study(storage_url: str, name: str):
    return optuna.load_study(study_name=name, storage=storage_url)


def test_tune_runs_resumes_from_sqlite_and_its_best_trial_reevaluates_on_fresh_seeds(tmp_path):
    tune = ["--seeds_per_trial=2", "--space=learning_rate=1e-3..3e-2:log,hidden_units=16..64", *SCORING_FLAGS,
            f"--output_dir={tmp_path}", "--study_name=t"]
    first = run_program("harness.tune", "--n_trials=2", *tune)
    assert first.returncode == 0, first.stderr
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _study(storage, "t")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    before = read_records(tmp_path / "trials.jsonl")
    assert len(before) == 4 and all(schema_errors(r) == [] for r in before)
    # Each candidate's two seeds trained together as vectorized replicas, and its value is their mean.
    assert {r["config"]["replicas"] for r in before} == {2}
    trial = study.trials[0]
    assert trial.value == pytest.approx(sum(trial.user_attrs["scores"]) / 2)

    resumed = run_program("harness.tune", "--n_trials=3", *tune)
    assert resumed.returncode == 0, resumed.stderr
    study = _study(storage, "t")
    assert len(study.trials) == 3 and study.trials[2].params != study.trials[0].params
    after = read_records(tmp_path / "trials.jsonl")
    assert after[:4] == before and len(after) == 6
    assert "Ran 1 candidate(s) now" in resumed.stdout

    changed = run_program("harness.tune", "--n_trials=3", *tune[1:], "--seeds_per_trial=3")
    assert changed.returncode == 2 and "other settings (seeds_per_trial)" in changed.stderr

    reeval = run_program("harness.reeval", f"--optuna_storage={storage}", "--seeds=3",
                         f"--output_dir={tmp_path / 'reeval'}")
    assert reeval.returncode == 0, reeval.stderr
    comparison = json.loads((tmp_path / "reeval" / "summary.json").read_text())["comparison"]
    best = study.best_trial
    assert comparison["hyperparameters"] == best.params and comparison["base_seed"] == 1
    assert comparison["tuned_score"] == pytest.approx(best.user_attrs["mean"])
    assert comparison["tuning_seeds_reused"] == 0
