"""The seed-robust Optuna tuner (`harness.tune`): runs, resumes from SQLite, and its best trial re-evaluates."""

import json

import optuna
import pytest
from conftest import SCORING_FLAGS, run_program

from harness.studies.records import read_records, schema_errors


def _study(storage_url: str, name: str):
    return optuna.load_study(study_name=name, storage=storage_url)


@pytest.mark.slow
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
    # Only like with like: another metric or another experiment than the tuner scored is refused.
    for flag, said in (("--metric=validation_loss", "the study scored its trials by validation_accuracy; "
                                                   "--metric=validation_loss would set another metric"),
                       ("--epochs=3", "study 't' was tuned with epochs=2; --epochs would re-evaluate another "
                                      "experiment")):
        refused = run_program("harness.reeval", f"--optuna_storage={storage}", flag, f"--output_dir={tmp_path / 'x'}")
        assert refused.returncode == 2 and said in refused.stderr


# A user's regression model, and a width the tuner's space reaches that its function refuses.
REGRESSION = """import keras


def create_model(units=8):
    if units > 8:
        raise ValueError("too wide for this machine")
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def load_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((120, 10)).astype("float32")
    return (x[:100], x[:100].sum(axis=1, keepdims=True)), (x[100:], x[100:].sum(axis=1, keepdims=True))
"""


@pytest.mark.slow
def test_tune_on_a_regression_scores_its_validation_loss_and_a_failed_tune_leaves_no_study(tmp_path):
    (tmp_path / "regression.py").write_text(REGRESSION)
    user = [f"--model={tmp_path}/regression.py:create_model", f"--data={tmp_path}/regression.py:load_data",
            "--epochs=1", "--seeds_per_trial=2", f"--output_dir={tmp_path / 'tune'}"]
    storage = f"sqlite:///{tmp_path / 'tune' / 'optuna.db'}"
    # Defaults: the loss on a held-out 20% (a regression has no accuracy), the learning rate tuned.
    tuned = run_program("harness.tune", "--n_trials=1", *user)
    assert tuned.returncode == 0, tuned.stderr
    (name,) = optuna.get_all_study_names(storage)
    settings = _study(storage, name).user_attrs["harness"]
    assert settings["metric"] == "validation_loss" and settings["config"]["validation_fraction"] == 0.2
    records = read_records(tmp_path / "tune" / "trials.jsonl")
    assert len(records) == 2 and all(r["metrics"]["validation_loss"] is not None for r in records)
    # Accuracy is refused before any training, naming the metrics the model has.
    refused = run_program("harness.tune", "--n_trials=1", "--metric=validation_accuracy", *user)
    assert refused.returncode == 2 and "its metrics are validation_loss, test_loss" in refused.stderr
    assert len(read_records(tmp_path / "tune" / "trials.jsonl")) == 2
    # A tune whose first candidate fails stops with one sentence and leaves no new study behind.
    failed = run_program("harness.tune", "--n_trials=1", "--space=units=16|32", "--study_name=wide", *user)
    assert failed.returncode == 2 and "too wide for this machine" in failed.stderr
    assert optuna.get_all_study_names(storage) == [name]


def test_a_storage_password_never_reaches_a_record(tmp_path):
    # Every record writer redacts (harness/redaction.py): the storage URL a re-evaluation keeps as its source.
    from harness.studies.records import read_records, write_records

    write_records(tmp_path / "runs.jsonl", [{"storage": "postgresql://tuner:s3cret@db.example/optuna"},
                                            {"storage": "mysql+pymysql://u:p%40ss@h:3306/o"},
                                            {"storage": "sqlite:///results/tune/x.db"}])
    assert [r["storage"] for r in read_records(tmp_path / "runs.jsonl")] == [
        "postgresql://tuner:<redacted>@db.example/optuna", "mysql+pymysql://u:<redacted>@h:3306/o",
        "sqlite:///results/tune/x.db"]
