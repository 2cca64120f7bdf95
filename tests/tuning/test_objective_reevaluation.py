"""Re-running a user's own Optuna objective (`harness.reeval --objective`, `harness.reeval(...)`): the values
it returns over seeds, against the value its study recorded."""

import json

import optuna
import pytest
from conftest import run_program

import harness
from harness.errors import UsageError
from harness.studies.records import read_records, schema_errors
from harness.tuning.objective_runs import seeds_for

# Objectives as users write them: Optuna's names, randomness from NumPy's global generator (which
# keras.utils.set_random_seed seeds, as it seeds Python's, TensorFlow's and Keras's).
OBJECTIVES = """\
import numpy as np
import optuna


def noisy(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    return x ** 2 + np.random.normal(0.0, 1.0)


def noiseless(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    return (x - 0.3) ** 2


def self_seeded(trial):
    np.random.seed(7)
    return trial.suggest_float("x", -1.0, 1.0) + np.random.normal()


def asks_for_more(trial):
    return trial.suggest_float("x", -1.0, 1.0) + trial.suggest_int("layers", 1, 3)


CALLS = [0]


def flaky(trial):
    # Diverges on every third call, whatever the seed: its first call in a process among them.
    CALLS[0] += 1
    if CALLS[0] % 3 == 1:
        raise RuntimeError("the loss diverged")
    return trial.suggest_float("x", -1.0, 1.0) ** 2


if __name__ == "__main__":
    optuna.create_study().optimize(noisy, n_trials=3)
"""


def _study(tmp_path, name, n_trials=20):
    """A study as a user's own tuning leaves it: their objective, unseeded, minimized, in SQLite."""
    import importlib.util

    (tmp_path / "tuning.py").write_text(OBJECTIVES)
    spec = importlib.util.spec_from_file_location("user_tuning", tmp_path / "tuning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(getattr(module, name), n_trials=n_trials, catch=(RuntimeError,))
    return storage, study


def test_a_noisy_objectives_best_trial_was_a_lucky_seed_and_the_top_k_are_rerun_paired(tmp_path):
    storage, study = _study(tmp_path, "noisy")
    comparison = harness.reeval(objective=f"{tmp_path}/tuning.py:noisy", storage=storage, seeds=12, top_k=3,
                                output_dir=str(tmp_path / "reeval"))
    # The best of 20 noisy values is far below what the same x gives on fresh seeds.
    assert comparison["source"]["kind"] == "objective" and comparison["source"]["trial"] == study.best_trial.number
    assert comparison["hyperparameters"] == study.best_trial.params and comparison["higher_is_better"] is False
    assert comparison["tuned_score"] == study.best_value
    assert comparison["expected_drop"] > 0 and comparison["expected_drop_ci95"][0] > 0
    assert "the tuned score was partly a lucky seed (the winner's curse)" in comparison["findings"][-1]
    # Seed r gives every trial the same noise, so the pairs differ by x**2 alone: each verdict is certain.
    top = comparison["top_k"]
    xs = {t["trial"]: t["params"]["x"] ** 2 for t in top["trials"]}
    assert top["k"] == 3 and [t["trial"] for t in top["trials"]][0] == study.best_trial.number
    assert top["rerun_best"] == min(xs, key=xs.get)
    for pair in top["pairs"]:
        assert pair["n_pairs"] == 12 and pair["ties"] == 0 and pair["p_a_beats_b"] in (0.0, 1.0)
    if top["rerun_best"] != study.best_trial.number:
        assert top["findings"][-1].startswith("Yes, another trial would have been chosen")
    summary = json.loads((tmp_path / "reeval" / "summary.json").read_text())
    assert schema_errors(summary) == [] and summary["comparison"] == comparison
    runs = read_records(tmp_path / "reeval" / "runs.jsonl")
    assert len(runs) == 36 and all(schema_errors(r) == [] for r in runs)
    # Seeds hashed from --seed, not 0..11 (the seeds users tune with), each in its record to repeat by hand.
    assert [r["seed"] for r in runs[:12]] == seeds_for(0, 12) == summary["seeds"]
    assert len(set(summary["seeds"])) == 12 and not set(summary["seeds"]) & set(range(100))
    # Run again: every call is recorded, none runs twice.
    again = harness.reeval(objective=f"{tmp_path}/tuning.py:noisy", storage=storage, seeds=12, top_k=3,
                           output_dir=str(tmp_path / "reeval"))
    assert again == comparison and len(read_records(tmp_path / "reeval" / "runs.jsonl")) == 36


@pytest.mark.slow
def test_a_noiseless_objective_has_no_drop_and_says_the_seed_does_not_matter(tmp_path):
    storage, study = _study(tmp_path, "noiseless", n_trials=5)
    comparison = harness.reeval(objective=f"{tmp_path}/tuning.py:noiseless", storage=storage, seeds=4,
                                output_dir=str(tmp_path / "reeval"))
    assert comparison["expected_drop"] == 0 and comparison["expected_drop_ci95"] == [0, 0]
    assert str(comparison["expected_drop"]) == "0.0"  # not -0.0
    assert comparison["distribution"]["sd"] == 0
    tuned = f"{study.best_value:.4g}"
    assert comparison["findings"] == [
        f"Over 4 seeds (each set by keras.utils.set_random_seed before its call), the value noiseless() returns is "
        f"{tuned} on average (95% CI {tuned} to {tuned}), SD 0 (95% CI 0 to 0), from {tuned} to {tuned}.",
        f"All 4 runs gave {tuned}, the tuned score: it does not change with the seed, so the tuned score was no "
        "lucky seed (expected drop 0)."]
    # Trials whose value does not change with the seed: not "within run-to-run noise" (none was seen), but
    # 3 pairs are still too few for a verdict; 6 are enough.
    def top_two(seeds):
        return harness.reeval(objective=f"{tmp_path}/tuning.py:noiseless", storage=storage, seeds=seeds, top_k=2,
                              output_dir=str(tmp_path / f"top{seeds}"))["top_k"]

    top = top_two(3)
    pair = top["pairs"][0]
    assert pair["seed_free"] and not pair["detected"] and pair["p_a_beats_b"] == 1.0
    assert pair["sentence"].startswith(f"{pair['a']} is better than {pair['b']} on all 3 paired seeds, by the same ")
    assert pair["sentence"].endswith("each time: neither score changed with the seed, but 3 pairs are too few to "
                                     "rule out chance (6 or more would).")
    top = top_two(6)
    assert top["pairs"][0]["detected"]
    assert top["findings"][-1] == (f"Re-run over the same 6 seeds, the tuner's pick ({pair['a']}) keeps the best "
                                   "mean of the 2 and beats every other detectably: no other trial would have "
                                   "been chosen.")


def test_a_run_that_raises_is_a_failed_run_even_the_first(tmp_path):
    storage, _ = _study(tmp_path, "flaky", n_trials=4)
    comparison = harness.reeval(objective=f"{tmp_path}/tuning.py:flaky", storage=storage, seeds=4,
                                output_dir=str(tmp_path / "reeval"))
    runs = read_records(tmp_path / "reeval" / "runs.jsonl")
    assert [r["status"]["code"] for r in runs] == ["failed", "ok", "ok", "failed"]
    assert comparison["n_failed"] == 2 and comparison["distribution"]["n"] == 2
    assert comparison["findings"][1] == (f"2 of 4 runs (50%) failed (first, seed {runs[0]['seed']}: RuntimeError: "
                                         "the loss diverged) and are left out: with these parameters the run fails "
                                         "on some seeds, which the study's one value does not show.")


def test_an_objective_that_exits_fails_its_run_with_a_sentence():
    import os
    import sys

    from harness.tuning.objective_runs import call_seeded

    def exits(trial):
        sys.exit(7)

    def exits_hard(trial):
        os._exit(9)

    for objective, said in ((exits, "sys.exit(7)"), (exits_hard, "os._exit(9)")):
        outcome = call_seeded(objective, {}, 0, 1)
        assert outcome["value"] is None and outcome["status"]["code"] == "failed"
        assert outcome["status"]["message"] == f"the objective called {said} on this call"


def test_an_objective_that_seeds_itself_is_named(tmp_path):
    storage, _ = _study(tmp_path, "self_seeded", n_trials=3)
    comparison = harness.reeval(objective=f"{tmp_path}/tuning.py:self_seeded", storage=storage, seeds=3,
                                output_dir=str(tmp_path / "reeval"))
    assert comparison["distribution"]["sd"] == 0
    assert comparison["findings"][-1].startswith(f"{tmp_path}/tuning.py:self_seeded makes its own seeding call "
                                                 "(np.random.seed(7) at tuning.py:16)")


def test_objective_errors_are_one_sentence(tmp_path):
    storage, _ = _study(tmp_path, "noiseless", n_trials=2)
    with pytest.raises(UsageError, match=r"tuning\.py:asks_for_more cannot be called with trial \d+'s parameters "
                                         r"as the study ran it: it suggests a parameter the trial does not hold \("):
        harness.reeval(objective=f"{tmp_path}/tuning.py:asks_for_more", storage=storage, seeds=2,
                       output_dir=str(tmp_path / "reeval"))
    with pytest.raises(UsageError, match=r"^--top_k=5 asks for more trials than Optuna study 'noiseless' "
                                         r"completed \(2\)$"):
        harness.reeval(objective=f"{tmp_path}/tuning.py:noiseless", storage=storage, top_k=5,
                       output_dir=str(tmp_path / "reeval"))
    optuna.create_study(storage=storage, study_name="another")
    with pytest.raises(UsageError, match=r"holds 2 studies \(noiseless, another\); name one with --optuna_study "
                                         r"\(study= in Python\)$"):
        harness.reeval(objective=f"{tmp_path}/tuning.py:noiseless", storage=storage, output_dir=str(tmp_path / "r"))
    # A file that runs its study when imported is refused before it can retrain anything.
    (tmp_path / "runs_on_import.py").write_text(
        "import optuna\n\ndef objective(trial):\n    return trial.suggest_float('x', 0, 1)\n\n"
        "optuna.create_study().optimize(objective, n_trials=1)\n")
    with pytest.raises(UsageError) as refused:
        harness.reeval(objective=f"{tmp_path}/runs_on_import.py:objective", storage=storage, study="noiseless",
                       output_dir=str(tmp_path / "r"))
    assert str(refused.value) == (f"importing {tmp_path}/runs_on_import.py runs an Optuna study (study.optimize at "
                                  "module level); put that under `if __name__ == \"__main__\":` so the harness can "
                                  "import the objective alone")


@pytest.mark.slow
def test_reeval_of_a_study_it_did_not_make_needs_the_objective(tmp_path):
    storage, study = _study(tmp_path, "noisy", n_trials=3)
    refused = run_program("harness.reeval", f"--optuna_storage={storage}", f"--output_dir={tmp_path / 'out'}")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: Optuna study 'noisy' was not made by harness.tune, so the harness cannot tell which model, data "
        "split and metric produced its score; re-run your own objective over seeds with "
        "--objective=FILE.py:FUNCTION.")
    assert not (tmp_path / "out" / "summary.json").exists()
    # The same with the objective, each call in a fresh process: the study's script is imported, not run.
    result = run_program("harness.reeval", f"--objective={tmp_path}/tuning.py:noisy", f"--optuna_storage={storage}",
                         "--seeds=2", "--isolation=process", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Re-running {tmp_path}/tuning.py:noisy, your own objective (its model, data, "
                                    "split and metric as you wrote them), with Optuna study 'noisy' trial "
                                    f"{study.best_trial.number}'s parameters (x=")
    runs = read_records(tmp_path / "out" / "runs.jsonl")
    assert [(r["isolation"], r["seed"], r["status"]["code"]) for r in runs] == [("process", seed, "ok")
                                                                                for seed in seeds_for(0, 2)]
    assert len(optuna.load_study(study_name="noisy", storage=storage).trials) == 3
