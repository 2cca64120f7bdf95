"""`harness.compare_configs`'s comparison: every configuration over the same N seeds (paired seed by seed),
P(A beats B) with its interval for every two, and the table and sentences that say it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from harness.analysis import stats
from harness.studies import Executor
from harness.table import format_table
from harness.trial.config import TrialConfig
from harness.tuning import hyperparameters, seed_scores


def compare(candidates: list[tuple[str, dict[str, Any], TrialConfig]], metric: str, base_seed: int, n_seeds: int,
            output_dir: Path, replicas,
            executor: Executor | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Trains each (label, fields, config) over the same seeds; per config its scores, and per pair the verdict."""
    configs = []
    for label, fields, config in candidates:
        records = seed_scores.run_seeds(config, base_seed, n_seeds, output_dir, replicas, executor=executor)
        values = seed_scores.scores(records, metric)
        configs.append({"label": label, "fields": fields, "config": config.as_dict(),
                        "study_id": records[0]["study_id"], "scores": values,
                        "distribution": seed_scores.describe_scores(values)})
    pairs = []
    for a, b in itertools.combinations(configs, 2):
        verdict = seed_scores.paired_comparison(a["scores"], b["scores"], metric)
        pairs.append({"a": a["label"], "b": b["label"], **verdict,
                      "sentence": seed_scores.verdict_sentence(a["label"], b["label"], verdict)})
    return configs, pairs


def format_comparison(document: dict[str, Any]) -> str:
    metric = document["metric"]
    fmt = lambda v: stats.format_score(v, metric)  # noqa: E731
    rows = []
    for entry in document["configs"]:
        d = entry["distribution"]
        ci = d and d["mean_ci95"]
        rows.append([entry["label"], hyperparameters.describe(entry["fields"]),
                     f"{d['n'] if d else 0}/{len(entry['scores'])}", fmt(d and d["mean"]), fmt(d and d["sd"]),
                     f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"])
    table = format_table(["config", "settings", "ok", f"{metric} mean", "SD", "mean 95% CI"], rows)
    header = f"{document['benchmark']}: {len(document['configs'])} configurations over the same " \
             f"{document['n_seeds']} seeds each (base seed {document['base_seed']})"
    return "\n".join([header, table, "", *(pair["sentence"] for pair in document["pairs"])])
