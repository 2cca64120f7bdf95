"""Re-evaluation (`harness.reeval`) of hyperparameters on a model: natural parameter names, a tuned value only
where it can be tied to the model, metric and split re-run, and the report of its findings."""

import json

import pytest
from conftest import run_program

from harness.studies.records import read_records, schema_errors

REGRESSION = ["--model=examples/optuna_regression.py:create_model", "--data=examples/optuna_regression.py:load_data",
              "--epochs=2"]


@pytest.mark.slow
def test_the_examples_optuna_parameters_under_their_own_names(tmp_path):
    # {"units": 64, "learning_rate": 0.01}, as Optuna's best_params hands them over: arguments of create_model.
    result = run_program("harness.reeval", *REGRESSION, "--params=examples/optuna_best_params.json", "--seeds=3",
                         "--tuned_score=0.05", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert schema_errors(summary) == []
    comparison = summary["comparison"]
    assert comparison["hyperparameters"] == {"units": 64, "learning_rate": 0.01}
    assert comparison["metric"] == "validation_loss" and comparison["tuned_score_is"] == "as given by --tuned_score"
    records = read_records(tmp_path / "trials.jsonl")
    assert {json.dumps(r["config"]["model_args"], sort_keys=True) for r in records} == {
        '{"learning_rate": 0.01, "units": 64}'}
    assert all(r["model"]["parameters"] == 10 * 64 + 64 + 64 + 1 for r in records)
    assert all(r["config"]["validation_fraction"] == 0.2 for r in records)
    # The header says what was re-run, and on which data split.
    assert ("Re-evaluating units=64, learning_rate=0.01 (from examples/optuna_best_params.json): your model "
            "examples/optuna_regression.py:create_model trained by the harness's training loop on "
            "examples/optuna_regression.py:load_data, scored by validation_loss on the 20% of the training data each "
            "run's split seed holds out (the score --tuned_score states it was measured by).") in result.stdout
    from harness.analysis.study_report import answer  # The report states the re-evaluation's findings too.

    assert comparison["findings"][1] in answer(summary)


@pytest.mark.slow
def test_a_tuned_value_from_a_file_the_harness_did_not_write_is_refused(tmp_path):
    trial = tmp_path / "best.json"
    trial.write_text(json.dumps({"params": {"units": 64, "learning_rate": 0.01}, "value": 9.311}))
    result = run_program("harness.reeval", *REGRESSION, f"--params={trial}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {trial} holds a tuned value but was not made by harness.tune, so the harness cannot tell which "
        "model, data split and metric produced its score; re-run your own objective over seeds with "
        "--objective=FILE.py:FUNCTION.")
    # The built-in benchmarks take the built-in names only.
    builtin = run_program("harness.reeval", "--benchmark=digits_mlp", "--params=examples/optuna_best_params.json",
                          f"--output_dir={tmp_path / 'out'}")
    assert builtin.returncode == 2
    assert ("'units', which the built-in model of benchmark 'digits_mlp' does not take; its hyperparameters are "
            "learning_rate, dropout_rate, hidden_units, batch_size, epochs") in builtin.stderr


def test_a_pick_that_keeps_the_best_mean_but_is_not_told_apart_is_not_called_certain():
    from harness.tuning.reevaluation import top_k_findings

    block = {"k": 3, "rerun_best": 7, "trials": [{"trial": 7, "distribution": {"n": 5}}],
             "pairs": [{"b": "trial 2", "detected": True, "p_a_beats_b": 0.9},
                       {"b": "trial 4", "detected": False, "p_a_beats_b": 0.6}]}
    assert top_k_findings(block, "accuracy") == [
        "Re-run over the same 5 seeds, the tuner's pick (trial 7) keeps the best mean of the 3, so the tuner would "
        "choose it again; 1 of the others cannot be told apart from it at this N, so over other seeds it could have "
        "been chosen as well."]
    block["pairs"][1]["detected"] = True
    assert top_k_findings(block, "accuracy") == [
        "Re-run over the same 5 seeds, the tuner's pick (trial 7) keeps the best mean of the 3 and beats every other "
        "detectably: no other trial would have been chosen."]
