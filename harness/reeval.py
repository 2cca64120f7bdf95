"""`python -m harness.reeval`: was the tuned result luck? Re-run a tuned trial over fresh seeds.

    python -m harness.reeval --objective=my_tuning.py:objective --optuna_storage=sqlite:///my_study.db
    python -m harness.reeval --objective=my_tuning.py:objective --optuna_storage=sqlite:///my_study.db --top_k=3
    python -m harness.reeval --optuna_storage=sqlite:///results/tune/digits_mlp/optuna.db --optuna_study=NAME
    python -m harness.reeval --model=my_model.py:create_model --data=... --params=best.json --tuned_score=0.12

Your own Optuna study: `--objective=FILE.py:FUNCTION` calls your objective
again with the stored trial's parameters (its best, or --optuna_trial=N) over
--seeds seeds, each call after `keras.utils.set_random_seed(seed)`, so what is
re-run is exactly what the tuner scored: your model, data, split and metric.
The value is what the function returns. With --top_k=K the K best trials run
over the same seeds, paired, and the verdict says whether the tuner's pick
still wins.

A study `harness.tune` made stores its config and metric: its trial trains
over --seeds seeds as the study condition `all` (every seed varied, op
determinism off), with fresh seeds (the tuner's base seed plus one unless
--seed says). `--params` and config flags re-run hyperparameters on a
benchmark or `--model`; a tuned score to set them against comes from a
harness.tune file or `--tuned_score`.

A verdict is only printed between like things: a study (or a file's value)
that the harness cannot tie to the model, metric and data split it re-runs is
refused with exit 2, naming --objective. Records go to OUTPUT_DIR (trials.jsonl,
or runs.jsonl for an objective); OUTPUT_DIR/summary.json carries the
`comparison` block.
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
from harness.flags import RAY_FLAGS, define_float, executor_from_flags, value_or
from harness.platform import environment
from harness.schema import SUMMARY_FILE
from harness.studies.conditions import ALL, condition
from harness.studies.storage import exclusive
from harness.trial.config import TrialConfig
from harness.trial.seeds import SeedSet
from harness.tuning import hyperparameters, optuna_storage, reevaluation, seed_scores

FLAGS = flags.FLAGS
# The shared flags reeval reads, which its --help lists with its own.
for _name in (*trial_flags.CONFIG_FLAGS, "seed", "metric", "seeds", "replicas", "isolation", *RAY_FLAGS,
              "output_dir"):
    flags.declare_key_flag(_name)
flags.DEFINE_string("objective", None, "Your own Optuna objective, FILE.py:FUNCTION or package.module:FUNCTION: "
                    "called with the stored trial's parameters (optuna.trial.FixedTrial) over --seeds seeds; "
                    "needed for a study harness.tune did not make.")
flags.DEFINE_string("params", None, "JSON file of hyperparameters: {\"learning_rate\": 0.003, ...}, or "
                    "{\"params\": {...}, \"value\": SCORE} as an Optuna trial exports it.")
flags.DEFINE_string("optuna_storage", None, "Optuna storage URL holding the tuning study, e.g. "
                    "sqlite:///results/tune/digits_mlp/optuna.db; its best trial is re-evaluated.")
flags.DEFINE_string("optuna_study", None, "Study name in --optuna_storage (needed when it holds several).")
flags.DEFINE_integer("optuna_trial", None, "Re-evaluate this trial number instead of the best one.")
flags.DEFINE_integer("top_k", 1, "Re-run the study's K best trials over the same seeds, paired, and say whether "
                     "the tuner's pick still wins.", lower_bound=1)
define_float("tuned_score", None, "The score the tuner reported (overrides the one in the study or file); "
             "given by hand, it states that it was measured as this re-evaluation measures it.")

# Config fields that change how fast a trial runs, not what it measures: a harness.tune study may be
# re-evaluated with these set otherwise. Any other field set by a flag is another experiment.
_RUN_ONLY_FIELDS = ("steps_per_loop", "intra_op_threads", "inter_op_threads", "data_dir")


def main(argv: list[str]) -> int:
    del argv
    if FLAGS.top_k > 1 and FLAGS.optuna_storage is None:
        raise UsageError("--top_k re-runs the K best trials of a study; it needs --optuna_storage")
    if FLAGS.top_k > 1 and FLAGS.optuna_trial is not None:
        raise UsageError("--top_k re-runs the study's K best trials; leave out --optuna_trial")
    if FLAGS.objective:
        return _reeval_objective()
    found = hyperparameters_from_flags()
    source = found["source"]
    named_by = {"optuna": f"Optuna trial {source.get('trial')}", "json": source.get("path")}.get(source["kind"])
    config, metric = score_flags.scoring_from_flags(
        hyperparameters.configured(found["base"], found["params"], named_by or "flags"))
    if "metric" in found and metric != found["metric"]:
        raise UsageError(f"the study scored its trials by {found['metric']}; --metric={metric} would set another "
                         "metric against its scores (leave --metric out)")
    base_seed, reused = base_seed_from_flags(found)
    study_id = seed_scores.seeds_study_id(config, base_seed)
    # A directory per re-evaluation (config and seeds), so one never overwrites another's summary.
    output_dir = Path(value_or("output_dir", f"results/reeval/{config.benchmark}/{study_id}"))
    executor = executor_from_flags()
    executor.check([config])  # before the directory is made
    with exclusive(output_dir):  # One run writes a directory at a time.
        started = time.perf_counter()
        replicas = score_flags.replicas_from_flags()
        records = seed_scores.run_seeds(config, base_seed, FLAGS.seeds, output_dir, replicas, FLAGS.isolation,
                                        executor)
        scores = seed_scores.scores(records, metric)
        others = [{**t, "scores": seed_scores.scores(seed_scores.run_seeds(
            config_of(found["base"], t["params"], config), base_seed, FLAGS.seeds, output_dir, replicas,
            FLAGS.isolation, executor), metric)} for t in found.get("others", [])]
        wall_s = time.perf_counter() - started
        summary = build_summary(study_id=study_id, base_config=config.as_dict(),
                                base_seeds=SeedSet.from_base(base_seed).as_dict(), conditions=[condition(ALL)],
                                repeats=FLAGS.seeds, records=records, environment=environment.capture(), wall_s=wall_s,
                                directory=output_dir)
        block = reevaluation.comparison_block(found, metric, scores, base_seed, reused)
        higher = stats.higher_is_better(metric)
        if others:
            pick = {"trial": found["source"]["trial"], "params": found["params"], "tuned_score": found["tuned_score"],
                    "scores": scores}
            block["top_k"] = reevaluation.top_k_block([pick, *others], metric, higher)
        summary["comparison"] = block
        write_summary(output_dir / SUMMARY_FILE, summary)
        print(f"The {FLAGS.seeds} re-evaluation runs on the test set (every seed varied, as the condition `all`):")
        print(format_summary(summary).rstrip())
        score_is = f" ({found['score_is']})" if found.get("score_is") and found["tuned_score"] is not None else ""
        print(f"\nRe-evaluating {hyperparameters.describe(found['params'])} ({_source_text(found['source'])}): "
              f"{score_said(config, metric)}{score_is}.")
        print("\n".join(block["findings"]))
        if others:
            print(f"\nThe study's {FLAGS.top_k} best trials over the same {FLAGS.seeds} seeds:")
            print(reevaluation.top_k_table(block["top_k"], metric))
            print("\n".join(block["top_k"]["findings"]))
        print(f"\nrecords in {output_dir}/ (trials.jsonl, summary.json); {wall_s:.0f}s")
        return 0


def config_of(base: TrialConfig, params: dict[str, Any], scored: TrialConfig) -> TrialConfig:
    """Another trial's config, scored as the re-evaluated one is (the same validation share)."""
    return hyperparameters.configured(base, params).replace(validation_fraction=scored.validation_fraction)


def score_said(config: TrialConfig, metric: str) -> str:
    """What is trained and measured, in words: the model, the loop, the metric and the data split."""
    model = f"your model {config.model}" if config.is_user_model else f"the built-in {config.benchmark}"
    from harness.trial import train  # TensorFlow: not at import, which --help does

    trainer, reason = train.trainer_of(config)
    loop = ("the harness's training loop" if trainer == "harness" else
            f"your model's own fit ({reason})" if reason else "your model's own fit")
    split = (f"the {config.validation_fraction:.0%} of the training data each run's split seed holds out"
             if metric.startswith("validation_") else "the test set")
    return f"{model} trained by {loop} on {config.dataset}, scored by {metric} on {split}"


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
        found = _from_json(FLAGS.params, overrides)
    else:
        params = {name: value for name, value in overrides.items() if name in hyperparameters.TUNABLE}
        found = {"source": {"kind": "flags"}, "params": params, "tuned_score": None,
                 "tuned_score_is": None, "base": trial_flags.config_from_flags()}
    both = sorted(set(found["params"]) & set(overrides)) if found["source"]["kind"] != "flags" else []
    if both:
        raise UsageError(f"{', '.join(both)} is set both by a flag and by {found['source']['kind']}; give it once")
    if found.get("metric"):
        found["score_is"] = "the score the tuner used"
    if FLAGS.tuned_score is not None:
        found["tuned_score"], found["tuned_score_is"] = FLAGS.tuned_score, "as given by --tuned_score"
        found["score_is"] = "the score --tuned_score states it was measured by"
    return found


def _foreign(what: str) -> UsageError:
    return UsageError(f"{what} was not made by harness.tune, so the harness cannot tell which model, data split and "
                      "metric produced its score; re-run your own objective over seeds with "
                      "--objective=FILE.py:FUNCTION")


def _from_json(path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameters from a JSON file; a tuned value in it counts only where harness.tune wrote the file
    (it holds the study's settings: what measured the value)."""
    tuned = hyperparameters.params_from_json(path)
    found = {"source": {"kind": "json", "path": path}, "params": tuned.params, "tuned_score": tuned.value,
             "tuned_score_is": "the value in the file"}
    if tuned.settings is None:
        if tuned.value is not None and FLAGS.tuned_score is None:
            raise _foreign(f"{path} holds a tuned value but")
        found["base"] = trial_flags.config_from_flags()
        return found
    return _tuned_score_of(_with_tune_settings(found, tuned.settings, overrides, f"the study {path} came from"),
                           tuned.value, tuned.mean)


def _from_optuna(overrides: dict[str, Any]) -> dict[str, Any]:
    study = optuna_storage.load_study(FLAGS.optuna_storage, FLAGS.optuna_study)
    settings = optuna_storage.harness_settings(study)
    if settings is None:
        raise _foreign(f"Optuna study {study.study_name!r}")
    trials = optuna_storage.chosen_trials(study, FLAGS.optuna_trial, FLAGS.top_k)
    trial = trials[0]
    params = hyperparameters.check_params(trial.params, f"Optuna trial {trial.number}")
    source = {"kind": "optuna", "storage": FLAGS.optuna_storage, "study": study.study_name,
              "trial": trial.number}
    found = {"source": source, "params": params, "tuned_score": trial.value,
             "tuned_score_is": "the value Optuna recorded"}
    found = _tuned_score_of(_with_tune_settings(found, settings, overrides, f"study {study.study_name!r}"),
                            trial.value, trial.user_attrs.get("mean"))
    k = settings["seeds_per_trial"]
    found["others"] = [{"trial": t.number, "params": hyperparameters.check_params(t.params, f"Optuna trial {t.number}"),
                        "tuned_score": t.user_attrs.get("mean", t.value) if k > 1 else t.value} for t in trials[1:]]
    return found


def _with_tune_settings(found: dict[str, Any], settings: dict[str, Any], overrides: dict[str, Any],
                        study: str) -> dict[str, Any]:
    """`found` with the config, metric and seeds harness.tune stored: a flag that sets the config otherwise (but
    for how fast it runs) would re-run another experiment than the one scored, so it is refused."""
    stored = settings["config"]
    if FLAGS["benchmark"].present and FLAGS.benchmark != stored["benchmark"]:
        raise UsageError(f"{study} tuned benchmark {stored['benchmark']!r}, not {FLAGS.benchmark!r}")
    changed = sorted(name for name, value in overrides.items()
                     if name not in _RUN_ONLY_FIELDS and name in stored and stored[name] != value)
    if changed:
        name = changed[0]
        raise UsageError(f"{study} was tuned with {name}={stored[name]!r}; --{name} would re-evaluate another "
                         "experiment than the one its scores came from (leave it out)")
    try:
        found["base"] = TrialConfig(**stored).replace(**overrides)
    except TypeError:
        raise UsageError(f"{study} was made by another version of the harness; its config does not fit this one "
                         "(re-evaluate with --params, the trial's hyperparameters and --tuned_score)") from None
    found["metric"] = settings["metric"]
    found["tuning"] = {"base_seed": settings["base_seed"], "seeds_per_trial": settings["seeds_per_trial"],
                       "objective": settings["objective"]}
    return found


def _tuned_score_of(found: dict[str, Any], value: float | None, mean: float | None) -> dict[str, Any]:
    """The score to set against the re-runs: over k > 1 tuning seeds the tuner's objective may be a bound, so it
    is the seeds' mean; over one seed, that seed's score."""
    k = found["tuning"]["seeds_per_trial"]
    if k > 1:
        found["tuned_score"] = value if mean is None else mean
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


def _source_text(source: dict[str, Any]) -> str:
    if source["kind"] in ("optuna", "objective") and "study" in source:
        return f"Optuna study {source['study']} trial {source['trial']}"
    return f"from {source['path']}" if "path" in source else "from flags"


def _reeval_objective() -> int:
    """The user's own objective, re-run: the tuned trial (and with --top_k the next best) over --seeds seeds."""
    from harness.tuning import objective_reevaluation  # the study machinery (TensorFlow): not at import

    config_flags = sorted(trial_flags.config_overrides())
    if config_flags or FLAGS["benchmark"].present or FLAGS.metric:
        given = f"--{(config_flags or ['benchmark' if FLAGS['benchmark'].present else 'metric'])[0]}"
        raise UsageError(f"{given} sets the harness's own trials; --objective re-runs your objective as written "
                         "(its model, data, split and metric are its own), so leave it out")
    if FLAGS.optuna_storage is None or FLAGS.params:
        raise UsageError("--objective re-runs a trial of your Optuna study: give its --optuna_storage=URL (its best "
                         "trial is re-run, or --optuna_trial=N), not --params")
    result = objective_reevaluation.reevaluate(
        FLAGS.objective, storage=FLAGS.optuna_storage, study=FLAGS.optuna_study, trial=FLAGS.optuna_trial,
        top_k=FLAGS.top_k, seeds=FLAGS.seeds, base_seed=FLAGS.seed, isolation=FLAGS.isolation,
        tuned_score=FLAGS.tuned_score, output_dir=FLAGS.output_dir)
    print(objective_reevaluation.format_result(result))
    return 0


if __name__ == "__main__":
    cli.run(main, writes_records=True)
