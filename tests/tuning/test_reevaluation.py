"""Re-evaluation (`harness.reeval`): a tuned trial of an Optuna study re-run over fresh seeds."""

import json

import optuna
from conftest import SCORING_FLAGS, run_program

from harness.studies.records import read_records, schema_errors


def test_reeval_reads_the_best_trial_of_an_optuna_study_in_sqlite(tmp_path):
    # A study as a user's own Optuna tuning leaves it: two trials, the second the best.
    storage = f"sqlite:///{tmp_path / 'tuning.db'}"
    study = optuna.create_study(storage=storage, study_name="mine", direction="maximize")
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                     "hidden_units": optuna.distributions.IntDistribution(16, 256)}
    for params, value in (({"learning_rate": 0.001, "hidden_units": 32}, 0.90),
                          ({"learning_rate": 0.02, "hidden_units": 64}, 0.99)):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))

    result = run_program("harness.reeval", f"--optuna_storage={storage}", "--seeds=4", *SCORING_FLAGS,
                         f"--output_dir={tmp_path / 'reeval'}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "reeval" / "summary.json").read_text())
    assert schema_errors(summary) == []
    comparison = summary["comparison"]
    assert comparison["hyperparameters"] == {"learning_rate": 0.02, "hidden_units": 64}
    assert comparison["source"] == {"kind": "optuna", "storage": storage, "study": "mine", "trial": 1}
    assert comparison["tuned_score"] == 0.99 and comparison["n_seeds"] == 4
    assert comparison["distribution"]["n"] == 4
    records = read_records(tmp_path / "reeval" / "trials.jsonl")
    assert len(records) == 4 and all(schema_errors(r) == [] for r in records)
    assert {r["condition"] for r in records} == {"all"}
    assert {(r["config"]["learning_rate"], r["config"]["hidden_units"]) for r in records} == {(0.02, 64)}
    assert "The tuner reported 99.00" in result.stdout
    from harness.analysis.study_report import answer  # The report states the re-evaluation's findings too.

    assert comparison["findings"][1] in answer(summary)
