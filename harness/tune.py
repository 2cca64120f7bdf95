"""`python -m harness.tune`: an Optuna study that scores every candidate over k seeds, not one.

    python -m harness.tune --n_trials=20 --seeds_per_trial=5 --aggregate=lcb
    python -m harness.tune --n_trials=20 --seeds_per_trial=1        # the single-seed habit, for contrast

Each candidate (hyperparameters drawn from --space) trains over the same k
seeds of the study condition `all`, in one call as vectorized replicas where
the model supports it, and the tuner optimizes their mean or a pessimistic
confidence bound (`lcb`: a lower bound for accuracy, an upper one for loss),
which prefers candidates that are good on every seed over one lucky run.
Every training is a normal trial record in OUTPUT_DIR/trials.jsonl. The Optuna
study lives in a real SQLite file (--storage), so re-running the command
resumes it up to --n_trials finished candidates, and Optuna's own tools
(optuna-dashboard, `optuna trials`) can inspect it. Then:

    python -m harness.reeval --optuna_storage=sqlite:///results/tune/digits_mlp/optuna.db --optuna_study=NAME
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from absl import flags, logging

from harness import cli, score_flags, trial_flags
from harness.analysis import stats
from harness.errors import UsageError
from harness.flags import define_float, value_or
from harness.redaction import redact
from harness.studies import MAX_TRIALS_EACH
from harness.studies.records import write_json
from harness.studies.storage import exclusive
from harness.tuning import hyperparameters, optuna_storage, tuner

FLAGS = flags.FLAGS
# The shared flags tune reads, which its --help lists with its own.
for _name in (*trial_flags.CONFIG_FLAGS, "seed", "metric", "replicas", "output_dir"):
    flags.declare_key_flag(_name)
flags.DEFINE_integer("n_trials", 20, "Candidates the study should have finished; a resumed study runs the rest.",
                     lower_bound=1)
flags.DEFINE_integer("seeds_per_trial", 5, "k: seeds each candidate trains over.", lower_bound=1,
                     upper_bound=MAX_TRIALS_EACH)
flags.DEFINE_enum("aggregate", "mean", ["mean", "lcb"], "What the tuner optimizes over a candidate's k scores: "
                  "their mean, or a one-sided confidence bound on the bad side of the mean (lcb).")
define_float("lcb_confidence", 0.9, "One-sided confidence of the lcb objective's bound.")
flags.DEFINE_string("space", None, "Search space: NAME=LOW..HIGH[:log] or NAME=A|B|C, comma-separated; NAME one of "
                    f"{', '.join(hyperparameters.TUNABLE)} for a built-in benchmark; for your own model an argument "
                    "of its function under its own name (units), or learning_rate, batch_size, epochs (default: "
                    f"{hyperparameters.DEFAULT_SPACE}; for your own model {hyperparameters.USER_MODEL_SPACE}).")
flags.DEFINE_string("storage", None, "Optuna storage URL (default: sqlite:///OUTPUT_DIR/optuna.db).")
flags.DEFINE_string("study_name", None, "Optuna study name (default: BENCHMARK-METRIC-kSEEDS-AGGREGATE).")


def space_from_flags(base) -> str:
    return FLAGS.space if FLAGS.space is not None else hyperparameters.default_space(base)


def settings_from_flags(metric: str, base) -> dict[str, Any]:
    """What defines the tuning study: stored in it, and checked again when it is resumed."""
    if not 0.5 <= FLAGS.lcb_confidence < 1:
        raise UsageError(f"--lcb_confidence must be in [0.5, 1), got {FLAGS.lcb_confidence}")
    # "objective": what the study optimizes over a candidate's seeds (--aggregate), as studies store it. Secrets
    # redacted: the Optuna storage is a shared database; a resume compares the redacted settings.
    return {"config": redact(base.as_dict()), "metric": metric, "base_seed": FLAGS.seed,
            "seeds_per_trial": FLAGS.seeds_per_trial, "objective": FLAGS.aggregate,
            "lcb_confidence": FLAGS.lcb_confidence if FLAGS.aggregate == "lcb" else None,
            "space": space_from_flags(base), "replicas": score_flags.replicas_flag()}


def main(argv: list[str]) -> int:
    del argv
    base, metric = score_flags.scoring_from_flags(trial_flags.config_from_flags())
    space = hyperparameters.parse_space(space_from_flags(base))
    hyperparameters.check_space(space, base)
    settings = settings_from_flags(metric, base)
    output_dir = Path(value_or("output_dir", f"results/tune/{base.benchmark}"))
    with exclusive(output_dir):  # One tuner writes a directory's records at a time.
        storage_url = FLAGS.storage or optuna_storage.sqlite_url(output_dir / "optuna.db")
        name = FLAGS.study_name or f"{base.benchmark}-{metric}-k{FLAGS.seeds_per_trial}-{FLAGS.aggregate}"
        with tuner.removed_if_it_fails(storage_url, name):
            study = tuner.open_study(storage_url, name, settings)
            started, remaining = time.perf_counter(), run_candidates(study, base, metric, space, settings, output_dir)
        best = study.best_trial
        best_file = output_dir / f"{name}.best.json"
        # What reeval --params and compare_configs --config=LABEL:FILE read (an Optuna trial's shape), with the
        # study's settings: what measured the value.
        write_json(best_file, {"params": best.params, "value": best.value, "mean": best.user_attrs.get("mean"),
                               "study": name, "trial": best.number, "storage": storage_url,
                               optuna_storage.HARNESS_ATTR: settings})
        aggregate = "mean" if FLAGS.aggregate == "mean" else f"{FLAGS.lcb_confidence:.0%} pessimistic bound"
        print(f"{name}: {optuna_storage.finished_count(study)} candidates, each over {FLAGS.seeds_per_trial} seed(s); "
              f"objective: the {aggregate} of {metric}")
        print(tuner.results_table(study, metric))
        print(f"\nBest: trial {best.number} ({hyperparameters.describe(best.params)}), objective "
              f"{stats.format_score(best.value, metric)}.")
        print(f"Ran {remaining} candidate(s) now in {time.perf_counter() - started:.0f}s; records in {output_dir}/"
              f"trials.jsonl, study in {storage_url}")
        print(f"Its hyperparameters are in {best_file}. Re-evaluate it on fresh seeds:\n"
              f"  python -m harness.reeval --optuna_storage={storage_url} --optuna_study={name}")
        return 0


def run_candidates(study, base, metric: str, space, settings: dict[str, Any], output_dir: Path) -> int:
    """Runs the candidates the study still lacks for --n_trials; how many. One sentence if none has a score."""
    done = optuna_storage.finished_count(study)
    remaining = max(0, FLAGS.n_trials - done)
    if remaining:
        logging.info("study %s: %d candidate(s) finished, running %d more", study.study_name, done, remaining)

        def progress(study, trial) -> None:
            value = "failed" if trial.value is None else stats.format_score(trial.value, metric)
            logging.info("[candidate %d] %s: objective %s; best so far %s", trial.number,
                         hyperparameters.describe(trial.params), value,
                         stats.format_score(study.best_value, metric) if optuna_storage.completed(study) else "-")

        # --n_trials is per study. Other tuners on the same --storage (their own --output_dir) run
        # candidates too: stop once the study holds n_trials finished or running, as theirs do.
        states = optuna_storage.import_optuna().trial.TrialState
        enough = optuna_storage.import_optuna().study.MaxTrialsCallback(
            FLAGS.n_trials, states=(states.COMPLETE, states.PRUNED, states.RUNNING))
        objective = tuner.make_objective(base, settings, space, output_dir, score_flags.replicas_from_flags())
        study.optimize(objective, n_trials=remaining, callbacks=[progress, enough])
    if not optuna_storage.completed(study):
        raise UsageError(f"no candidate of study {study.study_name!r} finished with a score; see "
                         f"{output_dir}/trials.jsonl")
    return remaining


if __name__ == "__main__":
    cli.run(main, writes_records=True)
