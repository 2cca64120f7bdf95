"""Scores over seeds: paired verdicts, the winner's curse, the pessimistic bound, and metric advice."""


import pytest
from conftest import run_program

from harness.errors import UsageError
from harness.tuning import seed_scores

# A small digits MLP (with a validation set, the tuner's default score) that trains in about a second.


# --- Statistics --------------------------------------------------------------------------------------------

def test_identical_scores_are_no_detectable_difference():
    comparison = seed_scores.paired_comparison([0.9, 0.8, 0.85], [0.9, 0.8, 0.85], "validation_accuracy")
    assert comparison["ties"] == 3 and comparison["p_a_beats_b"] == 0.5 and not comparison["detected"]
    assert "no detectable difference" in seed_scores.verdict_sentence("A", "B", comparison)


def test_four_wins_out_of_four_are_not_yet_evidence():
    # A bootstrap would give [1, 1]; the exact interval admits that 4 coin flips can all land one way.
    comparison = seed_scores.paired_comparison([0.9] * 4, [0.8] * 4, "validation_accuracy")
    assert comparison["p_a_beats_b"] == 1.0 and comparison["p_ci95"][0] < 0.5 and not comparison["detected"]
    assert seed_scores.verdict_sentence("A", "B", comparison) == (
        "A is better than B on all 4 paired seeds, by the same 0.1 each time: neither score changed with the seed, "
        "but 4 pairs are too few to rule out chance (6 or more would).")
    noisy = seed_scores.paired_comparison([0.9, 0.91, 0.92, 0.93], [0.8] * 4, "validation_accuracy")
    assert not noisy["seed_free"] and not noisy["detected"]
    assert "within run-to-run noise" in seed_scores.verdict_sentence("A", "B", noisy)
    even = seed_scores.paired_comparison([0.9, 0.7, 0.9, 0.7], [0.8] * 4, "validation_accuracy")
    assert seed_scores.verdict_sentence("A", "B", even) == (
        "A and B each do better on half of 4 paired seeds (2 wins, 0 ties, 2 losses; 95% CI of P(A beats B): 7% to "
        "93%): no detectable difference.")


def test_consistent_wins_over_enough_seeds_are_detected_for_either_direction_of_metric():
    better = seed_scores.paired_comparison([0.9] * 10, [0.8] * 10, "test_accuracy")
    assert better["detected"] and better["meaningful"] and better["p_ci95"][0] > 0.5
    # For a loss, lower wins: A's higher losses make B the better one.
    worse = seed_scores.paired_comparison([0.5] * 10, [0.3] * 10, "validation_loss")
    assert worse["p_a_beats_b"] == 0.0 and worse["detected"]
    assert seed_scores.verdict_sentence("A", "B", worse).startswith("B is better in 100% of 10 paired seeds")
    assert "(10 wins, 0 ties, 0 losses; 95% CI of P(B beats A): 69% to 100%)" in \
        seed_scores.verdict_sentence("A", "B", worse)


def test_a_tuned_score_above_every_rerun_is_a_winners_curse():
    reruns = [0.90, 0.91, 0.92, 0.93, 0.94]
    result = seed_scores.against_tuned_score(reruns, 0.97, "validation_accuracy")
    assert result["better_than_share"] == 1.0
    assert result["expected_drop"] == pytest.approx(0.05)
    assert 0 < result["expected_drop_ci95"][0] < 0.05 < result["expected_drop_ci95"][1]
    # For a loss, a tuned loss below every rerun is the same curse: the drop is positive.
    loss = seed_scores.against_tuned_score([0.30, 0.31, 0.32], 0.25, "test_loss")
    assert loss["better_than_share"] == 1.0 and loss["expected_drop"] == pytest.approx(0.06)


def test_the_pessimistic_bound_sits_on_the_bad_side_of_the_mean():
    values = [0.90, 0.92, 0.94]
    assert seed_scores.pessimistic_bound(values, "validation_accuracy", 0.9) < 0.92
    assert seed_scores.pessimistic_bound(values, "validation_loss", 0.9) > 0.92
    assert seed_scores.pessimistic_bound([0.9], "validation_accuracy", 0.9) == 0.9


# --- Programs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("program,args,message", [
    ("harness.reeval", ["--params={tmp}/missing.json"], "missing.json: no such file"),
    ("harness.reeval", ["--optuna_storage=sqlite:///{tmp}/nowhere.db"], "no such SQLite file"),
    ("harness.compare_configs", ["--config=A:"], "at least two configurations"),
    ("harness.tune", ["--space=momentum=0..1"], "--space names 'momentum', which the built-in model of benchmark"),
])
@pytest.mark.slow
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, program, args, message):
    result = run_program(program, *[a.format(tmp=tmp_path) for a in args], f"--output_dir={tmp_path}")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_metric_advice_names_a_metric_the_benchmark_has():
    from harness.trial.config import load_benchmark

    regression = load_benchmark("random_regression")
    with pytest.raises(UsageError) as raised:
        seed_scores.check_metric("validation_accuracy", regression)
    assert str(raised.value) == ("'random_regression' is a regression (its model's loss is its only measure) and has "
                                 "no accuracy; its metrics are test_loss: pass --metric=test_loss")
    with pytest.raises(UsageError, match=r"give a validation share, e\.g\. --validation_fraction=0\.2, or pass one of "
                                         r"its metrics: test_loss$"):
        seed_scores.check_metric("validation_loss", regression)
    seed_scores.check_metric("test_loss", regression)
    assert seed_scores.default_metric(seed_scores.task_of(regression)) == "validation_loss"
    held_out = regression.replace(validation_fraction=0.2)
    assert seed_scores.metrics_of(held_out, "regression") == ["validation_loss", "test_loss"]
