"""`python -m harness.tune`: an Optuna study that scores every candidate over k seeds, not one.

    python -m harness.tune --n_trials=20 --seeds_per_trial=5 --objective=lcb
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

import numpy as np
from absl import flags, logging

from harness import cli, seed_flags, trial_flags
from harness.analysis import stats
from harness.errors import UsageError
from harness.flags import value_or
from harness.studies.records import write_json
from harness.studies.storage import exclusive
from harness.table import format_table
from harness.trial.seeds import derive_seed
from harness.tuning import hyperparameters, optuna_storage, robust

FLAGS = flags.FLAGS
flags.DEFINE_integer("n_trials", 20, "Candidates the study should have finished; a resumed study runs the rest.",
                     lower_bound=1)
flags.DEFINE_integer("seeds_per_trial", 5, "k: seeds each candidate trains over.", lower_bound=1)
flags.DEFINE_enum("objective", "mean", ["mean", "lcb"], "What the tuner optimizes over a candidate's k scores: "
                  "their mean, or a one-sided confidence bound on the bad side of the mean (lcb).")
flags.DEFINE_float("lcb_confidence", 0.9, "One-sided confidence of the lcb objective's bound.")
flags.DEFINE_string("space", None, "Search space: NAME=LOW..HIGH[:log] or NAME=A|B|C, comma-separated; NAME one of "
                    f"{', '.join(hyperparameters.TUNABLE)}, or model_args.NAME for an argument of your model "
                    f"function (default: {hyperparameters.DEFAULT_SPACE}; for your own model "
                    f"{hyperparameters.USER_MODEL_SPACE}).")
flags.DEFINE_string("storage", None, "Optuna storage URL (default: sqlite:///OUTPUT_DIR/optuna.db).")
flags.DEFINE_string("study_name", None, "Optuna study name (default: BENCHMARK-METRIC-kSEEDS-OBJECTIVE).")


def space_from_flags(base) -> str:
    return FLAGS.space if FLAGS.space is not None else hyperparameters.default_space(base)


def settings_from_flags(metric: str, base) -> dict[str, Any]:
    """What defines the tuning study: stored in it, and checked again when it is resumed."""
    if not 0.5 <= FLAGS.lcb_confidence < 1:
        raise UsageError(f"--lcb_confidence must be in [0.5, 1), got {FLAGS.lcb_confidence}")
    return {"config": base.as_dict(), "metric": metric, "base_seed": FLAGS.seed,
            "seeds_per_trial": FLAGS.seeds_per_trial, "objective": FLAGS.objective,
            "lcb_confidence": FLAGS.lcb_confidence if FLAGS.objective == "lcb" else None,
            "space": space_from_flags(base), "replicas": seed_flags.replicas_flag()}


def open_study(storage_url: str, name: str, settings: dict[str, Any]):
    """Creates the study, or resumes it when its stored settings match these."""
    optuna = optuna_storage.import_optuna()
    storage = optuna_storage.open_storage(storage_url, create=True)
    direction = "maximize" if stats.higher_is_better(settings["metric"]) else "minimize"
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    stored = optuna_storage.harness_settings(study)
    if stored is None and study.trials:
        raise UsageError(f"study {name!r} in {storage_url} was not made by harness.tune; choose another --study_name")
    if stored is None:
        study.set_user_attr(optuna_storage.HARNESS_ATTR, settings)
    elif stored != settings:
        changed = sorted(key for key in settings if stored.get(key) != settings[key])
        raise UsageError(f"study {name!r} in {storage_url} was made with other settings ({', '.join(changed)}); "
                         "resume it with the same flags, or choose another --study_name")
    # Re-seeded per session from the trials so far: a resumed study does not redraw its first candidates.
    sampler_seed = derive_seed(settings["base_seed"], f"tpe#{len(study.trials)}")
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed)
    return study


def make_objective(base, settings: dict[str, Any], space, output_dir: Path, replicas):
    metric, k = settings["metric"], settings["seeds_per_trial"]

    def objective(trial) -> float:
        params = {d.name: d.suggest(trial) for d in space}
        config = hyperparameters.configured(base, params)
        records = robust.run_seeds(config, settings["base_seed"], k, output_dir, replicas)
        values = robust.scores(records, metric)
        trial.set_user_attr("study_id", records[0]["study_id"])
        trial.set_user_attr("scores", values)
        failed = [r["repeat"] for r in records if r["status"]["code"] != "ok"]
        if failed or any(v is None for v in values):
            # Failed by the harness (e.g. NaN loss), not by a lost heartbeat: counted as finished.
            trial.set_user_attr(optuna_storage.FAILED_SEEDS_ATTR, failed)
            logging.info("candidate %d (%s) failed on seed(s) %s", trial.number, hyperparameters.describe(params),
                         failed)
            return float("nan")
        mean = float(np.mean(values))
        trial.set_user_attr("mean", mean)
        trial.set_user_attr("sd", stats.sample_sd(values) if k > 1 else None)
        if settings["objective"] == "lcb":
            return robust.pessimistic_bound(values, metric, settings["lcb_confidence"])
        return mean

    return objective


def results_table(study, metric: str, top: int = 10) -> str:
    """The best candidates so far: hyperparameters, objective, mean and SD over their seeds."""
    best_first = stats.higher_is_better(metric)
    ordered = sorted(optuna_storage.completed(study), key=lambda t: t.value, reverse=best_first)[:top]
    names = list(dict.fromkeys(name for t in ordered for name in t.params))
    fmt = lambda v: stats.format_score(v, metric)  # noqa: E731
    rows = [[t.number, *[t.params.get(n) for n in names], fmt(t.value), fmt(t.user_attrs.get("mean")),
             fmt(t.user_attrs.get("sd")) if t.user_attrs.get("sd") is not None else "-"] for t in ordered]
    return format_table(["trial", *names, "objective", "mean", "SD"], rows)


def main(argv: list[str]) -> int:
    del argv
    base = trial_flags.config_from_flags()
    metric = seed_flags.metric_from_flags(base)
    space = hyperparameters.parse_space(space_from_flags(base))
    hyperparameters.check_space(space, base)
    replicas = seed_flags.replicas_from_flags()
    settings = settings_from_flags(metric, base)
    output_dir = Path(value_or("output_dir", f"results/tune/{base.benchmark}"))
    with exclusive(output_dir):  # One tuner writes a directory's records at a time.
        storage_url = FLAGS.storage or optuna_storage.sqlite_url(output_dir / "optuna.db")
        name = FLAGS.study_name or f"{base.benchmark}-{metric}-k{FLAGS.seeds_per_trial}-{FLAGS.objective}"
        study = open_study(storage_url, name, settings)
        done = optuna_storage.finished_count(study)
        remaining = max(0, FLAGS.n_trials - done)
        started = time.perf_counter()
        if remaining:
            logging.info("study %s: %d candidate(s) finished, running %d more", name, done, remaining)

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
            study.optimize(make_objective(base, settings, space, output_dir, replicas), n_trials=remaining,
                           callbacks=[progress, enough])
        if not optuna_storage.completed(study):
            raise UsageError(f"no candidate of study {name!r} finished with a score; see {output_dir}/trials.jsonl")
        best = study.best_trial
        best_file = output_dir / f"{name}.best.json"
        # What reeval --params and compare_configs --config=LABEL:FILE read (an Optuna trial's shape).
        write_json(best_file, {"params": best.params, "value": best.value, "mean": best.user_attrs.get("mean"),
                               "study": name, "trial": best.number, "storage": storage_url})
        objective = "mean" if FLAGS.objective == "mean" else f"{FLAGS.lcb_confidence:.0%} pessimistic bound"
        print(f"{name}: {optuna_storage.finished_count(study)} candidates, each over {FLAGS.seeds_per_trial} seed(s); "
              f"objective: the {objective} of {metric}")
        print(results_table(study, metric))
        print(f"\nBest: trial {best.number} ({hyperparameters.describe(best.params)}), objective "
              f"{stats.format_score(best.value, metric)}.")
        print(f"Ran {remaining} candidate(s) now in {time.perf_counter() - started:.0f}s; records in {output_dir}/"
              f"trials.jsonl, study in {storage_url}")
        print(f"Its hyperparameters are in {best_file}. Re-evaluate it on fresh seeds:\n"
              f"  python -m harness.reeval --optuna_storage={storage_url} --optuna_study={name}")
        return 0


if __name__ == "__main__":
    cli.run(main)
