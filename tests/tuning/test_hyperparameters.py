"""Hyperparameters: search spaces and files read or refused in one sentence; tuned arguments of a model function."""

import json

import pytest
from conftest import run_conditions, run_program, user_config

from harness.errors import UsageError
from harness.studies.records import read_records
from harness.trial.config import user_model_config
from harness.tuning import hyperparameters, seed_scores


def test_the_regression_example_with_tuned_hyperparameters(tmp_path):
    params = json.loads(open("examples/optuna_best_params.json").read())
    config = user_model_config(model="examples/optuna_regression.py:create_model",
                               dataset="examples/optuna_regression.py:load_data", model_args=params, epochs=3)
    records = run_conditions(config, "control,init", 2, tmp_path)
    assert all(r["status"]["code"] == "ok" for r in records)
    assert all(r["model"]["task"] == "regression" and r["metrics"]["test_accuracy"] is None for r in records)
    assert all(r["model"]["optimizer"]["learning_rate"] == pytest.approx(0.01) for r in records)
    initial = {r["condition"]: set() for r in records}
    for r in records:
        initial[r["condition"]].add(r["fingerprints"]["initial_weights_sha256"])
    # The function's own tf.random.set_seed(seed) gets the init seed: init varies the weights, control does not.
    assert len(initial["control"]) == 1 and len(initial["init"]) == 2
    with pytest.raises(UsageError, match=r"^trials of 'optuna_regression.create_model' record no test_accuracy "
                                         r"\(its model is a regression\); pass --metric=test_loss$"):
        seed_scores.scores(records, "test_accuracy")


@pytest.mark.slow
def test_tuning_sets_arguments_of_the_model_function(user_files):
    space = hyperparameters.parse_space("learning_rate=1e-3..1e-1:log,model_args.units=8..64:log,"
                                        "model_args.activation=relu|tanh")
    assert [d.kind for d in space] == [float, int, str]
    base = user_config(user_files)
    assert hyperparameters.default_space(base) == "learning_rate=1e-4..3e-2:log"
    tuned = hyperparameters.configured(base, {"model_args.units": 16, "learning_rate": 0.01})
    assert tuned.model_args == {"units": 16} and tuned.learning_rate == 0.01
    # The function's own names, as an Optuna study of it stores them.
    assert hyperparameters.configured(base, {"units": 16, "dropout": 0.3}).model_args == {"units": 16, "dropout": 0.3}
    with pytest.raises(UsageError, match=rf"^--space names 'hidden_units', which {user_files}/model\.py:create_model "
                                         r"does not take \(its arguments: units, dropout\) and the harness does not "
                                         r"set \(it sets learning_rate, batch_size, epochs\)$"):
        hyperparameters.check_space(hyperparameters.parse_space("hidden_units=8..64"), base)
    output_dir = user_files / "tune"
    result = run_program("harness.tune", f"--model={user_files}/model.py:create_model",
                         f"--data=npz:{user_files}/data.npz", "--epochs=1", "--n_trials=2", "--seeds_per_trial=2",
                         "--space=units=8|16", "--metric=test_accuracy", f"--output_dir={output_dir}")
    assert result.returncode == 0, result.stderr
    best = json.loads(next(output_dir.glob("*.best.json")).read_text())
    assert best["params"]["units"] in (8, 16)
    records = read_records(output_dir / "trials.jsonl")
    # Two seeds per candidate; a candidate drawn twice reuses its trials.
    assert len(records) in (2, 4) and all(r["model"]["args"] == r["config"]["model_args"] for r in records)
    for r in records:  # 64 inputs, `units` hidden units, 10 outputs.
        units = r["config"]["model_args"]["units"]
        assert units in (8, 16) and r["model"]["parameters"] == 64 * units + units + units * 10 + 10


def test_search_spaces_and_hyperparameter_files_are_read_or_refused_in_one_sentence(tmp_path):
    space = hyperparameters.parse_space("learning_rate=1e-4..1e-1:log,hidden_units=32|64,epochs=1..3")
    assert [(d.name, d.low, d.high, d.log, d.choices) for d in space] == [
        ("learning_rate", 1e-4, 1e-1, True, ()), ("hidden_units", None, None, False, (32, 64)),
        ("epochs", 1.0, 3.0, False, ())]
    for bad in ("learning_rate=1..0", "learning_rate=0..1:log", "hidden_units=1.5..9", "", "2x=1..2"):
        with pytest.raises(UsageError):
            hyperparameters.parse_space(bad)
    from harness.trial.config import load_benchmark

    with pytest.raises(UsageError, match=r"^--space names 'momentum', which the built-in model of benchmark "
                                         r"'digits_mlp' does not take; its hyperparameters are learning_rate, "):
        hyperparameters.check_space(hyperparameters.parse_space("momentum=0..1"), load_benchmark("digits_mlp"))
    flat, trial_shaped, wrong = tmp_path / "flat.json", tmp_path / "trial.json", tmp_path / "wrong.json"
    flat.write_text('{"learning_rate": 0.01, "hidden_units": 64}')
    trial_shaped.write_text('{"params": {"dropout_rate": 0.3}, "value": 0.97}')
    wrong.write_text('{"hidden_units": 6.5}')
    assert hyperparameters.params_from_json(str(flat)) == hyperparameters.TunedFile(
        {"learning_rate": 0.01, "hidden_units": 64})
    assert hyperparameters.params_from_json(str(trial_shaped)) == hyperparameters.TunedFile({"dropout_rate": 0.3}, 0.97)
    with pytest.raises(UsageError, match="whole number"):
        hyperparameters.params_from_json(str(wrong))
    assert hyperparameters.parse_assignments("learning_rate=0.01,augment=false", "x") == \
        {"learning_rate": 0.01, "augment": False}
    with pytest.raises(UsageError, match="cannot differ"):
        hyperparameters.parse_assignments("determinism=true", "x")
