"""Seed-robust evaluation: reeval, compare_configs and tune, as a user runs them, and their statistics."""

import json

import optuna
import pytest
from conftest import run_program

from harness.errors import UsageError
from harness.studies.records import read_records, schema_errors
from harness.tuning import hyperparameters, robust

# A small digits MLP (with a validation set, the tuner's default score) that trains in about a second.
SMALL_FLAGS = ["--epochs=2", "--max_train_examples=400", "--validation_fraction=0.2", "--steps_per_loop=5"]


def _study(storage_url: str, name: str):
    return optuna.load_study(study_name=name, storage=storage_url)


# --- Statistics --------------------------------------------------------------------------------------------

def test_identical_scores_are_no_detectable_difference():
    comparison = robust.paired_comparison([0.9, 0.8, 0.85], [0.9, 0.8, 0.85], "validation_accuracy")
    assert comparison["ties"] == 3 and comparison["p_a_beats_b"] == 0.5 and not comparison["detected"]
    assert "no detectable difference" in robust.verdict_sentence("A", "B", comparison)


def test_four_wins_out_of_four_are_not_yet_evidence():
    # A bootstrap would give [1, 1]; the exact interval admits that 4 coin flips can all land one way.
    comparison = robust.paired_comparison([0.9] * 4, [0.8] * 4, "validation_accuracy")
    assert comparison["p_a_beats_b"] == 1.0 and comparison["p_ci95"][0] < 0.5 and not comparison["detected"]
    assert "within run-to-run noise" in robust.verdict_sentence("A", "B", comparison)


def test_consistent_wins_over_enough_seeds_are_detected_for_either_direction_of_metric():
    better = robust.paired_comparison([0.9] * 10, [0.8] * 10, "test_accuracy")
    assert better["detected"] and better["meaningful"] and better["p_ci95"][0] > 0.5
    # For a loss, lower wins: A's higher losses make B the better one.
    worse = robust.paired_comparison([0.5] * 10, [0.3] * 10, "validation_loss")
    assert worse["p_a_beats_b"] == 0.0 and worse["detected"]
    assert robust.verdict_sentence("A", "B", worse).startswith("B is better in 100% of 10 paired seeds")
    assert "(10 wins, 0 ties, 0 losses; 95% CI of P(B beats A): 69% to 100%)" in \
        robust.verdict_sentence("A", "B", worse)


def test_a_tuned_score_above_every_rerun_is_a_winners_curse():
    reruns = [0.90, 0.91, 0.92, 0.93, 0.94]
    result = robust.against_tuned_score(reruns, 0.97, "validation_accuracy")
    assert result["better_than_share"] == 1.0
    assert result["expected_drop"] == pytest.approx(0.05)
    assert 0 < result["expected_drop_ci95"][0] < 0.05 < result["expected_drop_ci95"][1]
    # For a loss, a tuned loss below every rerun is the same curse: the drop is positive.
    loss = robust.against_tuned_score([0.30, 0.31, 0.32], 0.25, "test_loss")
    assert loss["better_than_share"] == 1.0 and loss["expected_drop"] == pytest.approx(0.06)


def test_the_pessimistic_bound_sits_on_the_bad_side_of_the_mean():
    values = [0.90, 0.92, 0.94]
    assert robust.pessimistic_bound(values, "validation_accuracy", 0.9) < 0.92
    assert robust.pessimistic_bound(values, "validation_loss", 0.9) > 0.92
    assert robust.pessimistic_bound([0.9], "validation_accuracy", 0.9) == 0.9


def test_search_spaces_and_hyperparameter_files_are_read_or_refused_in_one_sentence(tmp_path):
    space = hyperparameters.parse_space("learning_rate=1e-4..1e-1:log,hidden_units=32|64,epochs=1..3")
    assert [(d.name, d.low, d.high, d.log, d.choices) for d in space] == [
        ("learning_rate", 1e-4, 1e-1, True, ()), ("hidden_units", None, None, False, (32, 64)),
        ("epochs", 1.0, 3.0, False, ())]
    for bad in ("momentum=0..1", "learning_rate=1..0", "learning_rate=0..1:log", "hidden_units=1.5..9", ""):
        with pytest.raises(UsageError):
            hyperparameters.parse_space(bad)
    flat, trial_shaped, wrong = tmp_path / "flat.json", tmp_path / "trial.json", tmp_path / "wrong.json"
    flat.write_text('{"learning_rate": 0.01, "hidden_units": 64}')
    trial_shaped.write_text('{"params": {"dropout_rate": 0.3}, "value": 0.97}')
    wrong.write_text('{"hidden_units": 6.5}')
    assert hyperparameters.params_from_json(str(flat)) == ({"learning_rate": 0.01, "hidden_units": 64}, None)
    assert hyperparameters.params_from_json(str(trial_shaped)) == ({"dropout_rate": 0.3}, 0.97)
    with pytest.raises(UsageError, match="whole number"):
        hyperparameters.params_from_json(str(wrong))
    assert hyperparameters.parse_assignments("learning_rate=0.01,augment=false", "x") == \
        {"learning_rate": 0.01, "augment": False}
    with pytest.raises(UsageError, match="cannot differ"):
        hyperparameters.parse_assignments("determinism=true", "x")


# --- Programs ----------------------------------------------------------------------------------------------

def test_reeval_reads_the_best_trial_of_an_optuna_study_in_sqlite(tmp_path):
    # A study as a user's own Optuna tuning leaves it: two trials, the second the best.
    storage = f"sqlite:///{tmp_path / 'tuning.db'}"
    study = optuna.create_study(storage=storage, study_name="mine", direction="maximize")
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
                     "hidden_units": optuna.distributions.IntDistribution(16, 256)}
    for params, value in (({"learning_rate": 0.001, "hidden_units": 32}, 0.90),
                          ({"learning_rate": 0.02, "hidden_units": 64}, 0.99)):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))

    result = run_program("harness.reeval", f"--optuna_storage={storage}", "--seeds=4", *SMALL_FLAGS,
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


def test_compare_configs_finds_no_difference_between_twins_and_detects_a_far_off_learning_rate(tmp_path):
    result = run_program("harness.compare_configs", "--config=A:", "--config=B:",
                         "--config=slow:learning_rate=1e-6", "--seeds=8", *SMALL_FLAGS,
                         f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "compare.json").read_text())
    assert schema_errors(document) == []
    pairs = {(p["a"], p["b"]): p for p in document["pairs"]}
    assert not pairs["A", "B"]["detected"] and "no detectable difference" in pairs["A", "B"]["sentence"]
    assert pairs["A", "slow"]["detected"] and pairs["A", "slow"]["p_a_beats_b"] > 0.9
    assert "A is reliably better than slow" in pairs["A", "slow"]["sentence"]
    # Paired seeds: every configuration ran the same 8 seed sets.
    records = read_records(tmp_path / "trials.jsonl")
    seeds_by_config = {}
    for record in records:
        seeds_by_config.setdefault(record["config"]["learning_rate"], set()).add(json.dumps(record["seeds"]))
    assert len(seeds_by_config) == 2 and len(set(map(frozenset, seeds_by_config.values()))) == 1
    assert "no detectable difference" in result.stdout


def test_tune_runs_resumes_from_sqlite_and_its_best_trial_reevaluates_on_fresh_seeds(tmp_path):
    tune = ["--seeds_per_trial=2", "--space=learning_rate=1e-3..3e-2:log,hidden_units=16..64", *SMALL_FLAGS,
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


@pytest.mark.parametrize("program,args,message", [
    ("harness.reeval", ["--params={tmp}/missing.json"], "missing.json: no such file"),
    ("harness.reeval", ["--optuna_storage=sqlite:///{tmp}/nowhere.db"], "no such SQLite file"),
    ("harness.compare_configs", ["--config=A:"], "at least two configurations"),
    ("harness.tune", ["--space=momentum=0..1"], "--space names 'momentum'"),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, program, args, message):
    result = run_program(program, *[a.format(tmp=tmp_path) for a in args], f"--output_dir={tmp_path}")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_metric_advice_names_a_metric_the_benchmark_has():
    from harness.trial.config import load_benchmark

    regression = load_benchmark("random_regression")
    with pytest.raises(UsageError) as raised:
        robust.check_metric("validation_accuracy", regression)
    assert str(raised.value) == ("benchmark 'random_regression' is a regression and has no accuracy; pass "
                                 "--metric=test_loss (or --metric=validation_loss with --validation_fraction=0.1)")
    with pytest.raises(UsageError, match=r"pass --validation_fraction=0\.1 \(or --metric=test_loss\)$"):
        robust.check_metric("validation_loss", regression)
    robust.check_metric("test_loss", regression)
