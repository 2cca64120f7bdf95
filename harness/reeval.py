"""`python -m harness.reeval`: was the tuned result luck? Re-run tuned hyperparameters over fresh seeds.

    python -m harness.reeval --optuna_storage=sqlite:///results/tune/digits_mlp/optuna.db
    python -m harness.reeval --params=results/tune/digits_mlp/NAME.best.json
    python -m harness.reeval --learning_rate=0.01 --hidden_units=64 --tuned_score=0.981

Hyperparameters come from an Optuna study's best trial (any Optuna storage
URL), a JSON file, or plain config flags. They are trained over N seeds as the
study condition `all` (every seed varied, op determinism off), and the score's
distribution is set against the score the tuner reported: where it falls
(percentile) and how much it is expected to drop (the winner's curse). Records
go to OUTPUT_DIR/trials.jsonl; OUTPUT_DIR/summary.json (a study summary, so
gate, report and validate read it) carries a `comparison` block. For a study
made by `harness.tune` the seeds are fresh: the base seed is the tuner's plus
one unless --seed says otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from absl import flags

from harness import cli, score_flags, trial_flags
from harness.analysis import stats
from harness.analysis.summary import build_summary, format_summary, write_summary
from harness.errors import UsageError
from harness.flags import value_or
from harness.platform import environment
from harness.schema import SUMMARY_FILE
from harness.studies.conditions import ALL, condition
from harness.studies.storage import exclusive
from harness.trial.config import TrialConfig
from harness.trial.seeds import SeedSet
from harness.tuning import hyperparameters, optuna_storage, reevaluation, seed_scores

FLAGS = flags.FLAGS
flags.DEFINE_string("params", None, "JSON file of hyperparameters: {\"learning_rate\": 0.003, ...}, or "
                    "{\"params\": {...}, \"value\": SCORE} as an Optuna trial exports it.")
flags.DEFINE_string("optuna_storage", None, "Optuna storage URL holding the tuning study, e.g. "
                    "sqlite:///results/tune/digits_mlp/optuna.db; its best trial is re-evaluated.")
flags.DEFINE_string("optuna_study", None, "Study name in --optuna_storage (needed when it holds several).")
flags.DEFINE_integer("optuna_trial", None, "Re-evaluate this trial number instead of the best one.")
flags.DEFINE_float("tuned_score", None, "The score the tuner reported (overrides the one in the study or file).")


def hyperparameters_from_flags() -> dict[str, Any]:
    """Where the hyperparameters come from, and what that source says (config, score, seeds used)."""
    if FLAGS.params and FLAGS.optuna_storage:
        raise UsageError("give the hyperparameters once: --params or --optuna_storage, not both")
    if FLAGS.optuna_storage is None and (FLAGS.optuna_study or FLAGS.optuna_trial is not None):
        raise UsageError("--optuna_study and --optuna_trial need --optuna_storage")
    overrides = trial_flags.config_overrides()
    if FLAGS.optuna_storage:
        found = _from_optuna(overrides)
    elif FLAGS.params:
        params, score = hyperparameters.params_from_json(FLAGS.params)
        found = {"source": {"kind": "json", "path": FLAGS.params}, "params": params, "tuned_score": score,
                 "tuned_score_is": "the value in the file", "base": trial_flags.config_from_flags()}
    else:
        params = {name: value for name, value in overrides.items() if name in hyperparameters.TUNABLE}
        found = {"source": {"kind": "flags"}, "params": params, "tuned_score": None,
                 "tuned_score_is": None, "base": trial_flags.config_from_flags()}
    both = sorted(set(found["params"]) & set(overrides)) if found["source"]["kind"] != "flags" else []
    if both:
        raise UsageError(f"{', '.join(both)} is set both by a flag and by {found['source']['kind']}; give it once")
    if FLAGS.tuned_score is not None:
        found["tuned_score"], found["tuned_score_is"] = FLAGS.tuned_score, "as given by --tuned_score"
    return found


def _from_optuna(overrides: dict[str, Any]) -> dict[str, Any]:
    study = optuna_storage.load_study(FLAGS.optuna_storage, FLAGS.optuna_study)
    trial = optuna_storage.chosen_trial(study, FLAGS.optuna_trial)
    params = hyperparameters.check_params(trial.params, f"Optuna trial {trial.number}")
    source = {"kind": "optuna", "storage": FLAGS.optuna_storage, "study": study.study_name,
              "trial": trial.number}
    settings = optuna_storage.harness_settings(study)
    found = {"source": source, "params": params, "tuned_score": trial.value,
             "tuned_score_is": "the value Optuna recorded", "maximize": study.direction.name == "MAXIMIZE"}
    if settings is None:  # A study made elsewhere: the config is the benchmark's, as flags say.
        found["base"] = trial_flags.config_from_flags()
        return found
    if FLAGS["benchmark"].present and FLAGS.benchmark != settings["config"]["benchmark"]:
        raise UsageError(f"study {study.study_name!r} tuned benchmark {settings['config']['benchmark']!r}, "
                         f"not {FLAGS.benchmark!r}")
    try:
        found["base"] = TrialConfig(**settings["config"]).replace(**overrides)
    except TypeError:
        raise UsageError(f"study {study.study_name!r} was made by another version of the harness; its config "
                         "does not fit this one (re-evaluate with --params and the trial's hyperparameters)") from None
    found["metric"] = settings["metric"]
    found["tuning"] = {"base_seed": settings["base_seed"], "seeds_per_trial": settings["seeds_per_trial"],
                       "objective": settings["objective"]}
    k = settings["seeds_per_trial"]
    if k > 1:  # The objective may be a bound; the score to set against the seeds is the tuning seeds' mean.
        found["tuned_score"] = trial.user_attrs.get("mean", trial.value)
        found["tuned_score_is"] = f"the mean over its {k} tuning seeds"
    else:
        found["tuned_score_is"] = "the score of its single tuning seed"
    return found


def base_seed_from_flags(found: dict[str, Any]) -> tuple[int, int]:
    """(base seed, how many of its seeds the tuner already trained on): fresh seeds unless --seed says."""
    tuning = found.get("tuning")
    if tuning is None:
        return FLAGS.seed, 0
    if not FLAGS["seed"].present:
        return tuning["base_seed"] + 1, 0
    return FLAGS.seed, tuning["seeds_per_trial"] if FLAGS.seed == tuning["base_seed"] else 0


def main(argv: list[str]) -> int:
    del argv
    found = hyperparameters_from_flags()
    config = hyperparameters.configured(found["base"], found["params"])
    metric = score_flags.metric_from_flags(config, found.get("metric", "validation_accuracy"))
    if "maximize" in found and found["maximize"] != stats.higher_is_better(metric):
        direction = "maximizes" if found["maximize"] else "minimizes"
        raise UsageError(f"the Optuna study {direction} its objective but {metric} is "
                         f"{'higher' if stats.higher_is_better(metric) else 'lower'}-is-better; "
                         "pass the --metric the study optimized")
    base_seed, reused = base_seed_from_flags(found)
    study_id = seed_scores.seeds_study_id(config, base_seed)
    # A directory per re-evaluation (config and seeds), so one never overwrites another's summary.
    output_dir = Path(value_or("output_dir", f"results/reeval/{config.benchmark}/{study_id}"))
    with exclusive(output_dir):  # One run writes a directory at a time.
        started = time.perf_counter()
        records = seed_scores.run_seeds(config, base_seed, FLAGS.seeds, output_dir, score_flags.replicas_from_flags())
        wall_s = time.perf_counter() - started
        summary = build_summary(study_id=study_id, base_config=config.as_dict(),
                                base_seeds=SeedSet.from_base(base_seed).as_dict(), conditions=[condition(ALL)],
                                repeats=FLAGS.seeds, records=records, environment=environment.capture(), wall_s=wall_s)
        scores = seed_scores.scores(records, metric)
        summary["comparison"] = reevaluation.comparison_block(found, metric, scores, base_seed, reused)
        write_summary(output_dir / SUMMARY_FILE, summary)
        print(f"The {FLAGS.seeds} re-evaluation runs on the test set (every seed varied, as the condition `all`):")
        print(format_summary(summary).rstrip())
        print(f"\nRe-evaluating {hyperparameters.describe(found['params'])} ({_source_text(found['source'])}) "
              f"by {metric}, the score the tuner used:")
        print("\n".join(summary["comparison"]["findings"]))
        print(f"\nrecords in {output_dir}/ (trials.jsonl, summary.json); {wall_s:.0f}s")
        return 0


def _source_text(source: dict[str, Any]) -> str:
    if source["kind"] == "optuna":
        return f"Optuna study {source['study']} trial {source['trial']}"
    return f"from {source['path']}" if source["kind"] == "json" else "from flags"


if __name__ == "__main__":
    cli.run(main)
