"""Was my Optuna result luck? A user's own objective re-run with its study's tuned trial over many seeds.

Behind `python -m harness.reeval --objective=FILE.py:FUNCTION` and, in Python,
`harness.reeval(objective=..., storage=...)`. The trial the study chose (or
`trial`) and, with `top_k`, the next best ones run over the same seeds
(`objective_runs`: each call seeded, recorded, resumable); their values are set
against the value the study recorded (`reevaluation`). The study's direction
says whether higher is better. The summary (`harness.objective_reeval/1`)
goes to OUTPUT_DIR/summary.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.platform import environment
from harness.schema import OBJECTIVE_LOG_FILE, OBJECTIVE_REEVAL_SCHEMA, OBJECTIVE_RUNS_FILE, SUMMARY_FILE
from harness.studies.records import content_id, utc_timestamp, write_json
from harness.studies.storage import exclusive
from harness.trial.config import user_benchmark_name
from harness.tuning import hyperparameters, objective_runs, optuna_storage, reevaluation


def reevaluate(objective: str | Callable[..., Any], *, storage: str, study: str | None = None,
               trial: int | None = None, top_k: int = 1, seeds: int = 20, base_seed: int = 0,
               isolation: str = "inprocess", tuned_score: float | None = None,
               output_dir: str | Path | None = None) -> dict[str, Any]:
    """Re-runs the objective with the study's chosen trial (its best, or `trial`) over `seeds` seeds, and
    with `top_k` > 1 the K best trials over the same seeds. Returns the summary document; its `comparison`
    block says where the tuned value falls (`better_than_share`) and how much re-running loses
    (`expected_drop`, `expected_drop_ci95`), and `comparison["top_k"]` whether the pick still wins."""
    if seeds < 2:
        raise UsageError(f"seeds must be at least 2 for a spread, got {seeds}")
    if top_k > 1 and trial is not None:
        raise UsageError("top_k re-runs the study's K best trials; leave out the trial number")
    loaded = objective_runs.load_objective(objective)
    optuna_study = optuna_storage.load_study(storage, study)
    chosen = optuna_storage.chosen_trials(optuna_study, trial, top_k)
    source = {"kind": "objective", "objective": loaded.spec, "storage": storage,
              "study": optuna_study.study_name}
    trials = [{"trial": t.number, "params": dict(t.params), "tuned_score": t.value} for t in chosen]
    tuned_score_is = "the value Optuna recorded"
    if tuned_score is not None:
        trials[0]["tuned_score"], tuned_score_is = float(tuned_score), "as given by --tuned_score"
    seed_list = objective_runs.seeds_for(base_seed, seeds)
    reeval_id = content_id({"objective": loaded.spec, "source": source, "trials": [t["trial"] for t in trials],
                            "base_seed": base_seed, "isolation": isolation})
    directory = Path(output_dir or f"results/reeval/{user_benchmark_name(loaded.spec)}/{reeval_id}")
    with exclusive(directory):  # One run writes a directory at a time.
        started = time.perf_counter()
        block, runs = _run(loaded, trials, source, optuna_storage.maximizes(optuna_study), tuned_score_is, seed_list,
                           isolation, directory)
        document = {"schema": OBJECTIVE_REEVAL_SCHEMA, "reeval_id": reeval_id, "created_at": utc_timestamp(),
                    "objective": {"spec": loaded.spec, "source_sha256": loaded.source_sha256},
                    "study": {**source, "direction": optuna_study.direction.name.lower(),
                              "completed_trials": len(optuna_storage.completed(optuna_study))},
                    "base_seed": base_seed, "seeds": seed_list, "isolation": isolation,
                    "environment": environment.capture(),
                    "wall_s": time.perf_counter() - started, "ran_now": sum(r["created_now"] for r in runs),
                    "output_dir": str(directory), "comparison": block}
        write_json(directory / SUMMARY_FILE, document)
    return document


def _run(objective: objective_runs.Objective, trials: list[dict[str, Any]], source: dict[str, Any], higher: bool,
         tuned_score_is: str, seeds: list[int], isolation: str, directory: Path) -> tuple[dict[str, Any], list]:
    """Every trial over every seed (the same seeds for each: trial r's runs are paired); the comparison block
    (`top_k` inside it for more than one trial) and whether each run ran now. The objective's own output
    (Keras progress bars, prints) goes to OBJECTIVE_LOG_FILE, not the terminal."""
    from harness.studies.progress import Outcome, Progress

    existing = {r["run_key"]: r for r in objective_runs.check_resumable(directory / OBJECTIVE_RUNS_FILE, objective,
                                                                        directory)}
    keys = {f"trial {t['trial']} seed {seed}": objective_runs.run_key(objective, source, t["trial"], t["params"],
                                                                    seed, isolation)
            for t in trials for seed in seeds}
    progress = Progress([label for label, key in keys.items() if key not in existing], len(keys))
    runs_by_trial = []
    try:
        with objective_runs.output_to(directory / OBJECTIVE_LOG_FILE):
            for index, t in enumerate(trials):
                runs_by_trial.append(objective_runs.run_seeds(
                    objective, t["trial"], t["params"], seeds, directory, isolation, source, existing,
                    lambda r: progress.finished([Outcome(f"trial {r['trial']} seed {r['seed']}", r["status"]["code"],
                                                         r["wall_s"])]), tuned=index == 0))
    finally:
        progress.close()
    pick = trials[0]
    found = {"source": {**source, "trial": pick["trial"]}, "params": pick["params"],
             "tuned_score": pick["tuned_score"], "tuned_score_is": tuned_score_is}
    label = f"the value {objective.spec.rpartition(':')[2]}() returns"
    seeding = "seeds (each set by keras.utils.set_random_seed before its call)"
    failures = [f"seed {r['seed']}: {r['status']['message']}" for r in runs_by_trial[0] if r["status"]["code"] != "ok"]
    block = reevaluation.comparison_block(found, reevaluation.OBJECTIVE_VALUE, objective_runs.values(runs_by_trial[0]),
                                          seeds[0], 0, higher=higher, label=label, seeds=seeding, failures=failures)
    block["findings"] += objective_runs.reseeding_findings(runs_by_trial[0], objective.spec)
    if len(trials) > 1:
        block["top_k"] = reevaluation.top_k_block(
            [{**t, "scores": objective_runs.values(runs)} for t, runs in zip(trials, runs_by_trial, strict=True)],
            reevaluation.OBJECTIVE_VALUE, higher)
    flat = [{"created_now": r["run_key"] not in existing} for runs in runs_by_trial for r in runs]
    return block, flat


def format_result(document: dict[str, Any]) -> str:
    """What reeval --objective prints: what was re-run and how, the findings, and with top_k the K trials."""
    block = document["comparison"]
    seeds = document["seeds"]
    where = "in this process" if document["isolation"] == "inprocess" else "each in a fresh process"
    lines = [f"Re-running {document['objective']['spec']}, your own objective (its model, data, split and metric as "
             f"you wrote them), with Optuna study {block['source']['study']!r} trial {block['source']['trial']}'s "
             f"parameters ({hyperparameters.describe(block['hyperparameters'])}): {len(seeds)} calls, each after "
             f"keras.utils.set_random_seed(seed) with a seed derived from --seed={document['base_seed']} (each "
             f"call's seed is in its record), {where}; the study "
             f"{'maximizes' if block['higher_is_better'] else 'minimizes'} the value.",
             *block["findings"]]
    if "top_k" in block:
        top = block["top_k"]
        lines += ["", f"The study's {top['k']} best trials over the same {len(seeds)} seeds:",
                  reevaluation.top_k_table(top, reevaluation.OBJECTIVE_VALUE), "", *top["findings"]]
    lines += ["", f"runs in {document['output_dir']}/ ({OBJECTIVE_RUNS_FILE}, {SUMMARY_FILE}; what the objective "
              f"printed is in {OBJECTIVE_LOG_FILE}); {document['ran_now']} ran now in {document['wall_s']:.0f}s"]
    return "\n".join(lines)
