"""A study's summary: per condition, how much results vary and whether bits repeat.

Built from trial records alone, so it can be rebuilt from `trials.jsonl` at
any time. Written atomically (temporary file, fsync, rename): a kill leaves
the old summary or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis import stats
from harness.errors import UsageError
from harness.schema import (
    CORRECT_ARRAY,
    PREDICTED_CLASSES_ARRAY,
    SUMMARY_FILE,
    SUMMARY_SCHEMA,
    TRIAL_SCHEMA,
    TRIALS_FILE,
)
from harness.studies import determinism_cost, per_example
from harness.studies.conditions import ALL, CONTROL, KERNELS, RESUME, SOURCES, XLA_ON, Condition, condition
from harness.studies.records import (
    NotStrictJson,
    read_records,
    repeated_trials,
    schema_errors,
    strict_json_loads,
    utc_timestamp,
    write_json,
)
from harness.table import format_table


def build_summary(*, study_id: str, base_config: dict[str, Any], base_seeds: dict[str, int],
                  conditions: list[Condition], repeats: int, records: list[dict[str, Any]],
                  environment: dict[str, Any], wall_s: float | None, directory: Path | None,
                  cost: dict[str, Any] | None = None) -> dict[str, Any]:
    """`directory`: where the records' trials.jsonl is (their per-example files are beside it). `cost`: the
    study's cost record (COST_FILE, harness/studies/determinism_cost.py), if it has one."""
    by_condition: dict[str, list[dict[str, Any]]] = {c.name: [] for c in conditions}
    for record in records:
        if record["condition"] in by_condition:
            by_condition[record["condition"]].append(record)
    # Read off the model's task where records say it (failed trials too: a study whose every trial
    # diverged still measures accuracy), else off the metrics (records from before `model.task`).
    tasks = {(r.get("model") or {}).get("task") for r in records} - {None}
    classification = bool(tasks - {"regression"}) if tasks else \
        any(r["metrics"].get("test_accuracy") is not None for r in records)
    metric = "test_accuracy" if classification else "test_loss"
    rows = [_condition_summary(c, sorted(by_condition[c.name], key=lambda r: r["repeat"]), repeats, metric,
                               directory) for c in conditions]
    determinism_cost = cost_block(cost)
    _compare_with_reference_rows(rows, metric, determinism_cost)
    summary = {
        "schema": SUMMARY_SCHEMA,
        "study_id": study_id,
        "created_at": utc_timestamp(),
        "benchmark": base_config["benchmark"],
        "config": base_config,
        "base_seeds": base_seeds,
        "repeats": repeats,
        "primary_metric": metric,
        "environment": environment,
        "wall_s": wall_s,
        "conditions": rows,
        "power": power(rows, metric),
        "determinism_cost": determinism_cost,
    }
    source_batch = next(((r.get("data") or {}).get("source_batch_size") for r in records
                         if (r.get("data") or {}).get("source_batch_size")), None)
    if source_batch and source_batch != base_config.get("batch_size"):
        summary["rebatched"] = {"source": source_batch, "trained": base_config.get("batch_size")}
    weighted = weighting(base_config, records)
    if weighted:
        summary["weighted"] = weighted
    trained_by = next(((r.get("model") or {}) for r in records if (r.get("model") or {}).get("trainer_reason")),
                      None)
    if trained_by:
        # The config asked for the harness's loop, but the model's class has its own step: say which ran.
        summary["trainer"] = {"name": trained_by["trainer"], "reason": trained_by["trainer_reason"]}
    summary["findings"] = findings(summary)
    return summary


def weighting(config: dict[str, Any], records: list[dict[str, Any]]) -> str | None:
    """What weighted each training example's loss: "sample" (weights that came with the data), "class"
    (--class_weight), or None."""
    if config.get("class_weight"):
        return "class"
    if any(((r.get("data") or {}).get("sample_weights") or {}).get("train") for r in records):
        return "sample"
    return None


def power(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """What this many repeats can tell apart: for the varied sources ranked by SD, whether each and the next
    differ (an F interval of their ratio of SDs), and how many repeats would separate them at 80% power."""
    # The sources: conditions that vary something (not control, not an environment variant), apart from `all`.
    ranked = sorted((row for row in rows if not row["expects_identical_repeats"] and row["name"] != ALL
                     and row[metric] and row[metric]["n"] >= 2 and row[metric]["sd"] > 0),
                    key=lambda row: -row[metric]["sd"])
    if len(ranked) < 2:
        return None
    pairs = []
    for a, b in zip(ranked, ranked[1:], strict=False):
        interval = stats.sd_ratio_interval(a[metric]["sd"], a[metric]["n"], b[metric]["sd"], b[metric]["n"])
        ratio = a[metric]["sd"] / b[metric]["sd"]
        pairs.append({"a": a["name"], "b": b["name"], "sd_ratio": ratio, "ci95": interval,
                      "separable": bool(interval and interval[0] > 1),
                      "repeats_needed": stats.repeats_to_separate(ratio)})
    n = min(row[metric]["n"] for row in ranked)
    relative = stats.sd_interval(1.0, n)
    return {"repeats": n, "sd_relative_ci95": list(relative) if relative else None, "ranked_pairs": pairs}


def summarize_study(manifest: dict[str, Any], records: list[dict[str, Any]], environment: dict[str, Any],
                    wall_s: float | None, directory: Path, cost: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of the study a `harness.study/1` manifest planned, from its trial records (in
    `directory`)."""
    return build_summary(
        study_id=manifest["study_id"], base_config=manifest["base_config"], base_seeds=manifest["base_seeds"],
        conditions=[condition(name) for name in manifest["conditions"]], repeats=manifest["repeats"],
        records=records, environment=environment, wall_s=wall_s, directory=directory, cost=cost)


def summary_from_records(records: list[dict[str, Any]], cost: dict[str, Any] | None = None,
                         directory: Path | None = None) -> dict[str, Any]:
    """A summary rebuilt from trial records alone (no study flags at hand).

    Conditions come in the order the study ran them, repeats from the highest
    repeat seen; the base config, seeds and environment are control's (or the
    first record's, without a control condition). `directory`: where their
    trials.jsonl is, whose per_example/ holds their predictions.
    """
    if not records:
        raise UsageError("there are no trial records to summarize")
    # One record per trial (the first, should a key repeat): a copy counted twice would double n and
    # narrow every interval.
    first: dict[str, dict[str, Any]] = {}
    for record in records:
        first.setdefault(record["trial_key"], record)
    records = list(first.values())
    studies = sorted({r["study_id"] for r in records})
    if len(studies) > 1:
        raise UsageError(f"the records come from {len(studies)} different studies ({', '.join(studies)}); "
                         "summarize one study at a time")
    ordered = sorted(records, key=lambda r: r["repeat"])
    names = list(dict.fromkeys(r["condition"] for r in ordered))
    reference = next((r for r in ordered if r["condition"] == CONTROL), ordered[0])
    return build_summary(
        study_id=studies[0], base_config=reference["config"], base_seeds=reference["seeds"],
        conditions=[condition(name) for name in names], repeats=ordered[-1]["repeat"] + 1, records=records,
        environment=reference["environment"], wall_s=None, directory=directory,
        cost=cost if cost and cost.get("study_id") == studies[0] else None)


def load_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A study summary from `summary.json`, a trial-records file, or a study directory holding either.

    Anything that is not a valid record of a known schema is bad input: one
    sentence naming the file and the problem.
    """
    path = Path(path)
    directory = path if path.is_dir() else None
    if directory:
        summary_path, trials_path = path / SUMMARY_FILE, path / TRIALS_FILE
        path = summary_path if summary_path.exists() else trials_path
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    text = path.read_text(errors="replace")
    try:
        document = strict_json_loads(text)
    except NotStrictJson as error:
        raise UsageError(f"{path} holds {error}") from None
    except (json.JSONDecodeError, RecursionError):
        if path.suffix == ".json":
            raise UsageError(f"{path} is not valid JSON") from None
        document = None  # Not one JSON document: JSON lines of trial records, or damage.
    if isinstance(document, dict) and document.get("schema") != TRIAL_SCHEMA:
        _check_schema(path, document, SUMMARY_SCHEMA)
        repeated = repeated_rows(document)
        if repeated:
            raise UsageError(f"{path} {repeated[0]}")
        # A directory's trials.jsonl symlinked nowhere or to itself is there, and unreadable: refused, not skipped.
        if directory and (trials_path.exists() or trials_path.is_symlink()):
            check_records_beside(document, path, trials_path)
        return document
    records = [document] if isinstance(document, dict) else read_records(path)
    if not records:
        raise UsageError(f"{path} holds no records")
    _check_records(path, records)
    # The study's cost record beside its trials, if it has one of the same study (summary_from_records checks).
    return summary_from_records(records, determinism_cost.read(path.parent), path.parent)


def repeated_rows(summary: dict[str, Any]) -> list[str]:
    """What is wrong with a (schema-valid) summary that has more than one row of a condition, one phrase per
    such condition: which row would a reader take? What load_summary refuses and harness.validate lists."""
    names = [row["name"] for row in summary["conditions"]]
    return [f"has {names.count(name)} rows of condition {name}; a summary has one row per condition (the file was "
            "edited or joined)" for name in sorted({name for name in names if names.count(name) > 1})]


def check_records_beside(summary: dict[str, Any], summary_path: Path, trials_path: Path) -> None:
    """A study directory's summary stands for the records beside it, which the report draws and a resume
    extends: refused in one sentence (the gate and the report) unless every record is valid and of the summary's
    study, each trial is recorded once (records.repeated_trials), there are at least as many as it counted, and
    each record's per-example file is there as written (per_example.problems; harness.validate lists the same
    problems line by line). A study extended later (more repeats, other conditions) may hold more records than
    its summary counted."""
    records = read_records(trials_path)
    study_id = summary["study_id"]
    for number, record in enumerate(records, start=1):
        _check_schema(trials_path, record, TRIAL_SCHEMA, f" (record {number})")
        if record["study_id"] != study_id:
            raise UsageError(f"{trials_path} record {number} is a trial of study {record['study_id']}, and "
                             f"{summary_path} summarizes study {study_id}: one directory holds two studies' records "
                             "(copied or run into it), which the summary does not stand for; keep one study per "
                             "directory")
    _check_records(trials_path, records)
    counted = sum(row["n_ok"] + row["n_failed"] for row in summary["conditions"])
    if len(records) < counted:
        raise UsageError(f"{trials_path} holds {len(records)} trial record(s), and {summary_path} counts {counted} "
                         "trials: records were removed or replaced after the summary was written; run the study's "
                         "command again to record the missing trials")
    problems = per_example.problems(list(enumerate(records, start=1)), trials_path.parent)
    if problems:
        raise UsageError(problems[0][1])


def _check_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Every record valid, and each trial recorded once; one sentence naming the first that is not."""
    for number, record in enumerate(records, start=1):
        _check_schema(path, record, TRIAL_SCHEMA, f" (record {number})")
    repeated = repeated_trials(list(enumerate(records, start=1)), unit="record")
    if repeated:
        number, why = repeated[0]
        raise UsageError(f"{path} record {number} {why}; keep one record per trial (harness.validate lists them)")


def _check_schema(path: Path, record: dict[str, Any], expected: str, where: str = "") -> None:
    found = record.get("schema")
    if found != expected:
        raise UsageError(f"{path}{where} has schema {found!r}, but this harness reads {expected!r} here")
    errors = schema_errors(record)
    if errors:
        raise UsageError(f"{path}{where} is not a valid {expected} record: {errors[0]}")


def _condition_summary(condition: Condition, records: list[dict[str, Any]], repeats: int,
                       metric: str, directory: Path | None = None) -> dict[str, Any]:
    ok = [r for r in records if r["status"]["code"] == "ok"]
    hashes = [r["fingerprints"]["weights_sha256"] for r in ok]
    accuracy = stats.describe([r["metrics"].get("test_accuracy") for r in ok])
    arrays = [per_example.load(r, directory) or {} for r in ok]
    predictions = [a[PREDICTED_CLASSES_ARRAY] for a in arrays if PREDICTED_CLASSES_ARRAY in a]
    failed = [r["status"] for r in records if r["status"]["code"] != "ok"]
    reasons: dict[str, str] = {}  # per failure code, the first such trial's message: why, in its own words
    for status in failed:
        reasons.setdefault(status["code"], status.get("message") or "")
    # One trial's step: a vectorized group's step shared among its replicas, so studies run with any
    # --replicas compare (and the gate's speed rule guards the time a trial's step costs). A group's step
    # was measured once, so it counts once (its first replica's record): K copies of one measurement
    # would make an interval of no width.
    medians = [((r["timing"].get("steady_step_ms") or {}).get("median"), _vectorized(r)) for r in ok
               if _vectorized(r).get("index", 0) == 0]
    steps = [median / group.get("replicas", 1) for median, group in medians if median is not None]
    n_test = ok[0]["metrics"].get("test_examples") if ok else None
    correct = [a[CORRECT_ARRAY] for a in arrays if CORRECT_ARRAY in a]
    floor = stats.noise_floor(accuracy["mean"], n_test) if accuracy and n_test else None
    replays = [r["outputs"]["resume"] for r in ok if "replays" in r["outputs"].get("resume", {})]
    return {
        **({"restart_replay": _restart_replay(replays)} if condition.resumes else {}),
        "name": condition.name,
        "varies": condition.varies,
        "varies_nothing": _varies_nothing(condition.name, ok),
        "determinism": condition.determinism,
        "expects_identical_repeats": condition.expects_identical_repeats,
        "seeds_fixed": condition.seeds_fixed,
        "n_planned": repeats,
        "n_ok": len(ok),
        "n_failed": len(records) - len(ok),
        "failures": dict(Counter(status["code"] for status in failed)),
        "failure_reasons": reasons,
        "test_accuracy": accuracy,
        "test_loss": stats.describe([r["metrics"].get("test_loss") for r in ok]),
        "unique_weight_hashes": len(set(hashes)),
        "weight_hashes": sorted(set(hashes)),
        "bitwise_reproducible": len(set(hashes)) == 1 if len(ok) >= 2 else None,
        "mean_pairwise_disagreement": stats.mean_pairwise_disagreement(predictions),
        "disagreement_ci95": stats.disagreement_interval(predictions),
        "unstable_examples": stats.unstable_examples(predictions),
        "max_per_class_accuracy_diff": stats.max_per_class_difference(
            [r["metrics"]["test_per_class_accuracy"] for r in ok if r["metrics"].get("test_per_class_accuracy")]),
        "noise_floor": floor,
        # Every ok run's correctness per test example, or none (records from before it was recorded).
        "distribution_sd": stats.distribution_sd(np.stack(correct)) if correct and len(correct) == len(ok) else None,
        "step_ms_median": float(np.median(steps)) if steps else None,
        "step_ms_ci95": stats.median_interval(steps),
        "step_ms": steps,
        # Runs far outside the others, named (never dropped): a run trained otherwise, a machine's hiccup.
        "outliers": stats.outliers([(r["trial_key"], r["metrics"][metric]) for r in ok
                                    if r["metrics"].get(metric) is not None],
                                   at_least=(floor or 0.0) if metric == "test_accuracy" else 0.0),
        # Filled in against the reference rows (`all`, `control`) afterwards.
        "sd_share_of_all": None,
        "sd_share_ci95": None,
        "step_time_ratio_vs_control": None,
        "matches_control_bitwise": None,
        "metric_delta_vs_control": None,
    }


def _restart_replay(verdicts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The `resume` row's restart replay: how many resumed runs replayed their uninterrupted run bit for bit, and
    the first one's verdict that did not (else the first's): its step, stage, variables and the state missed."""
    if not verdicts:
        return None
    shown = next((v for v in verdicts if not v["replays"]), verdicts[0])
    return {"runs": len(verdicts), "replayed": sum(bool(v["replays"]) for v in verdicts),
            **{key: shown.get(key) for key in ("epoch", "step", "first_step", "stage", "variables", "missed",
                                               "message")}}


# A seed condition whose runs all recorded one such fingerprint varied nothing: (fingerprint, why in words).
VARIES_NOTHING_WHEN_EQUAL = {
    "init": ("initial_weights_sha256", "every run started from the same initial weights (the model's initializers "
                                       "do not follow the init seed)"),
    "shuffle": ("batch_order_sha256", "every run saw the training examples in the same order"),
    "split": ("split_sha256", "every run held out the same examples (or none: --validation_fraction)")}


def _varies_nothing(name: str, ok: list[dict[str, Any]]) -> str | None:
    """Why a seed condition can vary nothing here (its SD of 0 then says nothing about the source),
    from what the trials record: the seeds the model's random layers follow, the config's dropout and
    augmentation; for init, shuffle and split, the thing itself: equal initial weights, batch orders or held-out
    examples in every run. None where it can vary something, or the records cannot say."""
    if not ok:
        return None
    if name in VARIES_NOTHING_WHEN_EQUAL:
        key, why = VARIES_NOTHING_WHEN_EQUAL[name]
        hashes = {(r.get("fingerprints") or {}).get(key) for r in ok}
        return why if len(ok) >= 2 and len(hashes) == 1 and None not in hashes else None
    if name not in ("dropout", "augment"):
        return None
    model, config = ok[0].get("model") or {}, ok[0].get("config") or {}
    if "seed_sources" not in model:  # a built-in model: its config decides
        if name == "dropout" and config.get("dropout_rate") == 0:
            return "the model has no dropout (dropout_rate 0)"
        if name == "augment" and not config.get("augment"):
            return "the harness's own augmentation is off (--augment)"
        return None
    sources = set(model["seed_sources"].values())
    if name == "dropout" and "dropout" not in sources:
        return _constant_draws(model.get("constant_seeds") or {}) or \
            "the model has no layer the dropout seed drives (no Dropout, noise or other random layer)"
    if name == "augment" and "augment" not in sources and not config.get("augment"):
        return "the model has no augmentation layer and the harness's own augmentation is off (--augment)"
    return None


def _constant_draws(constant_seeds: dict[str, list[int]]) -> str | None:
    """Why the dropout seed varies nothing in a model none of whose layers follows it but some draw keras.random
    numbers with an int seed (the record's `model.constant_seeds`), naming them; None where none does."""
    if not constant_seeds:
        return None
    seeds = {path: "keras.random seed=" + ", ".join(map(str, drawn)) for path, drawn in constant_seeds.items()}
    if len(seeds) == 1:
        [(path, said)] = seeds.items()
        drawing = f"the layer {path} draws with a constant seed ({said} in its call)"
    else:
        drawing = f"the layers {', '.join(f'{path} ({said})' for path, said in seeds.items())} draw with constant " \
                  "seeds in their call"
    return f"{drawing}, the same numbers in every run, and no layer follows the dropout seed"


def _compare_with_reference_rows(rows: list[dict[str, Any]], metric: str,
                                 determinism_cost: dict[str, Any] | None = None) -> None:
    named = {row["name"]: row for row in rows}
    all_row, control = named.get(ALL), named.get(CONTROL)
    all_sd = (all_row or {}).get(metric, None) and all_row[metric]["sd"]
    for row in rows:
        if row[metric] and all_sd:
            row["sd_share_of_all"] = row[metric]["sd"] / all_sd
            row["sd_share_ci95"] = stats.sd_ratio_interval(row[metric]["sd"], row[metric]["n"], all_sd,
                                                           all_row[metric]["n"])
        if control is None or row is control:
            continue
        row["step_time_ratio_vs_control"] = _step_ratio(row, control, determinism_cost)
        if row[metric] and control[metric]:
            row["metric_delta_vs_control"] = row[metric]["mean"] - control[metric]["mean"]
        if row["seeds_fixed"] and row["weight_hashes"]:
            row["matches_control_bitwise"] = row["weight_hashes"] == control["weight_hashes"]


# Where a row's step time is that of trials run minutes apart from control's: other load and the machine's
# drift are in the ratio, so it has no interval and is not compared (the gate does not judge it either).
TIMED_APART = "timed apart"
TIMED_APART_NOTE = "~: trials timed minutes apart from control's, not an interval, not comparable"


def _step_ratio(row: dict[str, Any], control: dict[str, Any],
                determinism_cost: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row's step time over control's: for `kernels` (and env:xla=1) the interleaved measurement's paired
    ratio with its interval; for any other row the ratio of the conditions' medians, marked timed apart."""
    components = (determinism_cost or {}).get("components") or {}
    measured = {KERNELS: ("op_determinism", True), XLA_ON: ("xla", False)}.get(row["name"])
    if measured and (components.get(measured[0]) or {}).get("ratio"):
        component = components[measured[0]]
        # The cost is B (determinism on, XLA) over A; kernels' row is op determinism off over on.
        ratio, interval = component["ratio"], component["ci95"]
        if measured[1]:
            ratio, interval = 1 / ratio, interval and [1 / interval[1], 1 / interval[0]]
        return {"ratio": ratio, "ci95": interval, "method": "interleaved", "units": component.get("units", 1),
                "blocks": component["blocks"]}
    apart = stats.step_time_ratio(row["step_ms"], control["step_ms"])
    return {"ratio": apart["ratio"], "ci95": None, "method": TIMED_APART} if apart else None


COMPONENT_NAMES = {"op_determinism": "op determinism", "tf_data_determinism": "tf.data determinism",
                   "xla": "XLA"}


def cost_block(cost: dict[str, Any] | None) -> dict[str, Any] | None:
    """summary.json's `determinism_cost`: op determinism's cost in step time (B over A: on over off) with its
    interval over the measurement's independent units, and each component's the same way, or why it was not
    measured."""
    if not cost:
        return None
    components = {}
    for key, measured in cost["components"].items():
        entry = {"a": measured["a"], "b": measured["b"], "measured": measured["measured"]}
        if measured["measured"]:
            units = measured["units"]
            ratio = stats.unit_ratio([(unit["b_seconds"], unit["a_seconds"]) for unit in units])
            entry.update(ratio or {"ratio": None, "ci95": None, "units": 0, "blocks": 0},
                         blocks_per_unit=len(units[0]["a_seconds"]),
                         steps_per_block=int(np.median([unit["steps_per_block"] for unit in units])),
                         a_block_s_median=float(np.median([s for unit in units for s in unit["a_seconds"]])),
                         b_block_s_median=float(np.median([s for unit in units for s in unit["b_seconds"]])))
        else:
            entry.update(ratio=None, ci95=None, units=0, blocks=0, reason=measured["reason"])
        components[key] = entry
    op = components.get("op_determinism") or {}
    return {"ratio": op.get("ratio"), "ci95": op.get("ci95"), "units": op.get("units", 0),
            "blocks": op.get("blocks", 0), "method": cost["method"], "measured_at": cost["created_at"],
            "covers": COST_INTERVAL_COVERS, "components": components, "ops_that_pay": cost.get("ops_that_pay")}


# What the cost's interval stands for, in the summary beside it.
COST_INTERVAL_COVERS = ("what another measurement would find on this machine: the spread between independently "
                        "built and warmed models (each unit) as well as the noise between blocks; not another "
                        "machine, and not load that changes between studies")


def findings(summary: dict[str, Any]) -> list[str]:
    """One or two plain sentences per question the study answers, from its numbers."""
    metric = summary["primary_metric"]
    rows = {row["name"]: row for row in summary["conditions"]}
    said = []
    control = rows.get(CONTROL)
    if control and control["n_ok"]:
        if control["bitwise_reproducible"]:
            said.append(f"With every seed fixed and op determinism on, all {control['n_ok']} control runs "
                        "gave bitwise-identical weights: this configuration is reproducible here.")
        elif control["unique_weight_hashes"] > 1:
            said.append(f"Control runs are NOT bitwise reproducible: {control['unique_weight_hashes']} "
                        f"different weight hashes over {control['n_ok']} runs with identical seeds.")
        elif control["bitwise_reproducible"] is None:
            said.append("One control run finished: whether this configuration is reproducible takes two "
                        "(--repeats=2 or more).")
    rebatched = summary.get("rebatched")
    if rebatched:
        said.append(f"Your training tf.data.Dataset comes in batches of {rebatched['source']}; the harness read its "
                    f"examples and trained in batches of {rebatched['trained']} (--batch_size) from its own "
                    "pipeline, so the shuffle seed orders them: pass --batch_size="
                    f"{rebatched['source']} to train at your dataset's size.")
    weighted = summary.get("weighted")
    if weighted:
        by = ("the sample weights that came with your data" if weighted == "sample" else
              f"its class's weight (--class_weight={summary['config']['class_weight']})")
        said.append(f"Each training example's loss is weighted by {by}, as Keras's fit weights it; test accuracy "
                    "counts every test example once.")
    for row in summary["conditions"]:
        if row.get("varies_nothing"):
            said.append(f"The {row['name']} condition varies nothing here: {row['varies_nothing']}, so its spread "
                        f"says nothing about {row['name']} randomness.")
    sources = [r for r in summary["conditions"] if r["sd_share_of_all"] is not None
               and r["name"] not in (ALL, CONTROL)]
    if rows.get(ALL) and rows[ALL][metric] and sources:
        all_sd = rows[ALL][metric]["sd"]
        ranked = sorted(sources, key=lambda r: -r["sd_share_of_all"])
        top = ", ".join(f"{r['name']} {_share_text(r)}" for r in ranked[:4])
        unit = "points" if stats.higher_is_better(metric) else "(loss)"
        scale = stats.display_scale(metric)
        said.append(f"Across runs with every seed varied, {metric} has SD {all_sd * scale:.3g} {unit}; "
                    f"each source alone gives this share of it (95% interval): {top}.")
        floor_sentence = _noise_floor_sentence(rows[ALL], [r for r in ranked if r[metric] and r[metric]["sd"] > 0],
                                               metric)
        if floor_sentence:
            said.append(floor_sentence)
        above = [r for r in ranked if r["sd_share_of_all"] > 1]
        noisy = []
        for r in above:
            interval = r.get("sd_share_ci95")
            if interval and interval[0] > 1:
                said.append(f"{r['name']} alone varies {metric} more than every seed together (its share's "
                            "interval lies above 100%): the sources do not add up; varied together, their "
                            "effects partly cancel.")
            else:
                noisy.append((r["name"], interval))
        if noisy:
            names = _and([name for name, _ in noisy])
            reach = [f"{interval[0]:.0%}" for _, interval in noisy if interval]
            reached = f" ({'their intervals reach' if len(noisy) > 1 else 'its interval reaches'} {_and(reach)})" \
                if reach else ""
            said.append(f"{names}'s share{'s' if len(noisy) > 1 else ''} above 100% "
                        f"{'are' if len(noisy) > 1 else 'is'} within the noise of {rows[ALL][metric]['n']} repeats"
                        f"{reached}: an SD of few runs is itself uncertain, and `all`'s is no exception.")
    outlying = _outlier_sentence(summary["conditions"], metric)
    if outlying:
        said.append(outlying)
    for row in summary["conditions"]:
        if row["n_failed"]:
            reasons = "; ".join(f"{code} x{row['failures'][code]} ({reason.rstrip('.')})" if reason else
                                f"{code} x{row['failures'][code]}"
                                for code, reason in row.get("failure_reasons", {}).items())
            said.append(f"{row['name']}: {row['n_failed']} of {row['n_planned']} trials failed: {reasons}.")
    statement = _power_sentence(summary.get("power"))
    if statement:
        said.append(statement)
    kernels = rows.get(KERNELS)
    if kernels and kernels["n_ok"]:
        cost = _cost_sentences(summary.get("determinism_cost"))
        same = "gave the same bits as control" if kernels["matches_control_bitwise"] else \
            "gave different bits from control"
        repeat = "reproducible among themselves" if kernels["bitwise_reproducible"] else \
            f"{kernels['unique_weight_hashes']} different hashes among themselves"
        said.append(f"With op determinism off, runs {same} and were {repeat}.{cost}")
    bit = rows.get("bit")
    if bit and bit["n_ok"] and bit["test_loss"]:
        churn = bit["mean_pairwise_disagreement"]
        if churn:
            moved = f"two runs predict {churn:.2%} of test examples differently"
        else:
            moved = f"no {'prediction' if churn is not None else metric.replace('_', ' ')} changed"
        growth = "" if churn or bit[metric]["sd"] > 0 else \
            " `python -m harness.diverge --b_flip_bit=N` measures how fast such a difference grows, and how " \
            "many steps it would need to change a prediction."
        said.append(f"Flipping the lowest bit of one initial weight gave {bit['unique_weight_hashes']} different "
                    f"final weights in {bit['n_ok']} runs; {moved} "
                    f"(test loss SD {bit['test_loss']['sd']:.2g}).{growth}")
    order = rows.get("order")
    if order and order["n_ok"] and order[metric]:
        scale = stats.display_scale(metric)
        churn = order["mean_pairwise_disagreement"]
        churned = f", and two runs predict {churn:.2%} of test examples differently" if churn is not None else ""
        said.append(f"Adding each batch's terms in another order (`order`: equal sums in exact arithmetic, as GPU "
                    f"atomics reorder them) gave {order['unique_weight_hashes']} different final weights in "
                    f"{order['n_ok']} runs; {metric} SD {order[metric]['sd'] * scale:.3g}{churned}.")
    for row in summary["conditions"]:
        if row["name"].startswith("env:") and row["matches_control_bitwise"] is not None:
            verdict = "matches control bit for bit" if row["matches_control_bitwise"] else \
                "does NOT match control's bits"
            delta = row["metric_delta_vs_control"]
            change = f"{delta * 100:+.2f} points" if metric == "test_accuracy" else f"{delta:+.4g}"
            moved = f" ({metric.replace('_', ' ')} moves {change} on average)" if delta else ""
            said.append(f"{row['name']} ({row['varies']}) {verdict}{moved}{_interleaved_step_text(row)}."
                        + _same_setting_as_control(row["name"], summary.get("environment") or {}))
    replay = (rows.get(RESUME) or {}).get("restart_replay")
    if replay:
        bits = rows[RESUME]["matches_control_bitwise"]
        versus = "" if bits is None else (" Its final weights match control's bit for bit." if bits else
                                          " Its final weights do NOT match control's.")
        said.append(f"resume: {replay['replayed']} of {replay['runs']} resumed runs replay the uninterrupted run bit "
                    f"for bit. {replay['message']}{versus}")
    quality = _distribution_sentence(summary["conditions"], metric)
    if quality:
        said.append(quality)
    return said


def _outlier_sentence(rows: list[dict[str, Any]], metric: str) -> str | None:
    """`Outlier runs, kept in every figure above: init's trial 3f2a... (test accuracy 71.20, 14.3 SDs from its
    other 9 runs' mean 84.10).`"""
    named = []
    for row in rows:
        for outlier in row.get("outliers") or []:
            how_far = f"{outlier['sds_from_others']:.1f} SDs from" if outlier["sds_from_others"] is not None else \
                "unlike the identical"
            named.append(f"{row['name']}'s trial {outlier['trial_key']} ({metric.replace('_', ' ')} "
                         f"{stats.format_score(outlier['value'], metric)}, {how_far} its other {row['n_ok'] - 1} "
                         f"runs' mean {stats.format_score(outlier['others_mean'], metric)})")
    if not named:
        return None
    return (f"Outlier run{'s' if len(named) > 1 else ''}, kept in every figure above (a run trained otherwise, or "
            f"a fault, shows this way; `harness.rerun` repeats one): {_and(named)}.")


def _same_setting_as_control(name: str, environment: dict[str, Any]) -> str:
    """For env:onednn=V where control ran with oneDNN as V sets it (TensorFlow leaves oneDNN off by default on
    CPUs without AVX-512 VNNI/BF16, AVX-VNNI or AMX): the row compared control with itself, so it says nothing of
    oneDNN, and the sentence must say so."""
    if not name.startswith("env:onednn=") or environment.get("onednn_enabled") is None:
        return ""
    wanted = name.endswith("=1")
    if environment["onednn_enabled"] != wanted:
        return ""
    return (f" Control ran with oneDNN {'on' if wanted else 'off'} too (TensorFlow's default on this CPU), so "
            f"this compares control with itself; env:onednn={int(not wanted)} shows what oneDNN changes here.")


def _interleaved_step_text(row: dict[str, Any]) -> str:
    """`; its step takes 2.71x control's (95% CI [...], 3 units of interleaved blocks)` where the row's step was
    timed interleaved."""
    ratio = row["step_time_ratio_vs_control"]
    if not ratio or ratio.get("method") != "interleaved" or not ratio["ci95"]:
        return ""
    return f"; its step takes {ratio['ratio']:.2f}x control's (95% CI [{ratio['ci95'][0]:.2f}, " \
           f"{ratio['ci95'][1]:.2f}], {stats.units_text(ratio)})"


def _distribution_sentence(rows: list[dict[str, Any]], metric: str) -> str | None:
    """Whether what a condition varies changes the model's quality or only which test examples it gets right
    (Jordan 2024): for `all`, else the varied condition with the largest test-set SD. Only for a condition that
    varies something and whose runs differ: identical runs have nothing to decompose."""
    varied = [row for row in rows if not row["expects_identical_repeats"] and row.get("distribution_sd")
              and row["distribution_sd"]["test_set_sd"] > 0 and row["unique_weight_hashes"] > 1]
    if metric != "test_accuracy" or not varied:
        return None
    row = next((r for r in varied if r["name"] == ALL), max(varied, key=lambda r: r["distribution_sd"]["test_set_sd"]))
    d = row["distribution_sd"]
    low, high = d["ci95"]
    figures = (f"{row['name']}'s test-set SD is {d['test_set_sd'] * 100:.3g} points, independent per-example errors "
               f"predict {d['independent_errors_sd'] * 100:.3g}, and the distribution-wise SD is "
               f"{d['sd'] * 100:.3g} (95% CI [{low * 100:.3g}, {high * 100:.3g}], {d['runs']} runs)")
    source, plural = _source_phrase(row)
    verb = "change" if plural else "changes"
    if low > 0:
        return f"{source} {verb} the model's quality, not only which test examples flip: {figures}."
    return f"{source} {verb} which test examples flip, not measurably the model's quality: {figures}; the " \
           "interval reaches 0, so these runs may not differ in quality at all, and more runs would tell."


def _source_phrase(row: dict[str, Any]) -> tuple[str, bool]:
    """What a condition's repeats vary, as the subject of a sentence, and whether it is plural: `The seeds`
    for `all`, `The init seed` for a seed's condition, `Nondeterministic kernels` for kernels."""
    if row["name"] == ALL:
        return "The seeds", True
    if row["name"] in SOURCES:
        return f"The {row['name']} seed", False
    if row["name"] == KERNELS:
        return "Nondeterministic kernels", True
    return f"Varying {row['varies']}", False


def _noise_floor_sentence(all_row: dict[str, Any], varied: list[dict[str, Any]], metric: str) -> str | None:
    """Where the test set's own sampling noise lies against each varied condition's SD."""
    floor = all_row.get("noise_floor")
    if not floor or not varied:
        return None
    scale = stats.display_scale(metric)
    said = f"The test set's noise floor, sqrt(p(1-p)/n), is {floor * scale:.3g} points"
    under = [r for r in varied if r[metric]["sd"] <= floor]
    if not under:
        return f"{said}: below every varied condition's SD, so each spread is more than another test set would give."
    churned = [f"{r['name']} {r['mean_pairwise_disagreement']:.2%}" for r in under if r["mean_pairwise_disagreement"]]
    shown = f"; churn still shows {'it' if len(churned) == 1 else 'them'} ({_and(churned)})" if churned else ""
    return f"{said}: {_and([r['name'] for r in under])} move{'s' if len(under) == 1 else ''} {metric} by less " \
           f"than drawing another test set would{shown}."


def _and(words: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _share_text(row: dict[str, Any]) -> str:
    interval = row.get("sd_share_ci95")
    share = f"{row['sd_share_of_all']:.0%}"
    return f"{share} [{interval[0]:.0%}, {interval[1]:.0%}]" if interval else share


def _power_sentence(block: dict[str, Any] | None) -> str | None:
    """One line: how well this many repeats rank the sources, and what it would take to rank them."""
    if not block:
        return None
    low, high = block["sd_relative_ci95"] or (None, None)
    known = f"with {block['repeats']} repeats an SD is known to within x{low:.2f} to x{high:.2f}" if low else \
        f"with {block['repeats']} repeats"
    apart = [p for p in block["ranked_pairs"] if not p["separable"]]
    if not apart:
        order = " > ".join([block["ranked_pairs"][0]["a"], *(p["b"] for p in block["ranked_pairs"])])
        return f"Power: {known}, and the ranking {order} holds at 95% (each SD's interval clears the next)."
    verdict = "the ranking of the sources is not significant" if len(apart) == len(block["ranked_pairs"]) else \
        "parts of the ranking of the sources are not significant"
    told = "; ".join(f"{p['a']} and {p['b']} cannot be told apart (SD ratio {p['sd_ratio']:.2f}, 95% CI "
                     f"{p['ci95'][0]:.2f} to {p['ci95'][1]:.2f}), "
                     + (f"about {p['repeats_needed']} repeats each would separate them at 80% power"
                        if p["repeats_needed"] else "no feasible number of repeats would separate them")
                     for p in apart[:2])
    more = f" ({len(apart) - 2} more such pairs)" if len(apart) > 2 else ""
    return f"Power: {known}, so {verdict}: {told}{more}."


def _cost_sentences(block: dict[str, Any] | None) -> str:
    """Op determinism's cost in step time from the interleaved blocks, then tf.data's and the ops that pay.
    Nothing without a measurement: the kernels row's ratio then says it was timed apart."""
    if not block:
        return ""
    components = block["components"]
    said = [_component_sentence("Deterministic kernels", components.get("op_determinism"), "step time")]
    said.append(_component_sentence("tf.data's deterministic option", components.get("tf_data_determinism"),
                                    "input pipeline time"))
    ops = block.get("ops_that_pay")
    if ops and ops.get("ops"):
        said.append(_ops_sentence(ops["ops"]))
    elif ops and ops.get("note"):
        said.append(ops["note"][0].upper() + ops["note"][1:] + ".")
    return "".join(f" {sentence}" for sentence in said if sentence)


def _ops_sentence(rows: list[dict[str, Any]]) -> str:
    """Which ops of the train step op determinism changes, with their profiled times: ops its Python API traces
    in one setting only (a deterministic composite in place of one op), and ops whose kernel changes (a GPU's)."""
    def timed(row: dict[str, Any], key: str) -> str:
        return f"{row['op']} {row[key]:.3g} ms" if row[key] is not None else row["op"]

    replaced = [row for row in rows if row.get("traced_off", True) and not row.get("traced_on", True)]
    added = [row for row in rows if row.get("traced_on", True) and not row.get("traced_off", True)]
    kernels = [row for row in rows if row.get("traced_on", True) and row.get("traced_off", True)]
    parts = []
    if replaced or added:
        # The ops the profile saw first: the rest were folded or fused away, or too quick to register.
        shown = sorted(added, key=lambda row: -(row["on_ms_per_step"] or 0))
        listed = ", ".join(timed(row, "on_ms_per_step") for row in shown[:4])
        more = f" and {len(shown) - 4} more" if len(shown) > 4 else ""
        parts.append(f"it traces {_and([timed(row, 'off_ms_per_step') for row in replaced]) or 'no op'} as "
                     f"{len(added)} other op(s) ({listed}{more})")
    if kernels:
        parts.append("it changes the kernels of " + ", ".join(
            f"{row['op']} ({_op_ms(row['off_ms_per_step'])} -> {_op_ms(row['on_ms_per_step'])})" for row in kernels))
    return f"Op determinism changes the train step's ops (per step, one profiled block a setting, no interval): " \
           f"{'; '.join(parts)}."


def _op_ms(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.3g} ms"


def _component_sentence(subject: str, component: dict[str, Any] | None, what: str,
                        units: bool = True) -> str | None:
    """`Deterministic kernels cost +4.1% step time (95% CI [...], 3 units of 16 interleaved blocks).`; no
    measurable cost where the interval holds 0 (a cost is called negative, faster with determinism, only where
    the whole interval says so); one unit, no interval; or why it was not measured. units=False: the interval
    without what it was computed over (the verdict's short line)."""
    if not component:
        return None
    if not component["measured"]:
        return f"{subject}' cost was not measured: {component['reason'].rstrip('.')}." if subject.endswith("s") \
            else f"{subject}'s cost was not measured: {component['reason'].rstrip('.')}."
    cost = component["ratio"] - 1
    interval = component["ci95"]
    if not interval:
        return f"{subject} cost {cost:+.1%} {what} (one unit: one sample, no interval)."
    low, high = interval[0] - 1, interval[1] - 1
    measured = f"95% CI [{low:+.1%}, {high:+.1%}]" + (f", {stats.units_text(component)}" if units else "")
    if low <= 0 <= high:
        return f"{subject} cost no measurable {what} here ({cost:+.1%}, {measured})."
    if high < 0:
        return f"{subject} made {what} shorter here: {cost:+.1%} ({measured})."
    return f"{subject} cost {cost:+.1%} {what} ({measured})."


# The terminal table's columns left out first when it would not fit the terminal (the report keeps them all).
OPTIONAL_COLUMNS = ("dist SD [95% CI]", "test loss SD", "SD 95% CI", "of all [95% CI]", "step ms [95% CI]", "det",
                    "varies")


def format_summary(summary: dict[str, Any], width: int | None = None) -> str:
    """What a study prints: the verdict (verdict_lines), then a header line, a row per condition and the findings.
    `width`: the terminal's columns, which the table is made to fit (table.format_table)."""
    header = (f"{summary['benchmark']}: {summary['repeats']} repeats per condition, study "
              f"{summary['study_id']}{trainer_text(summary)}")
    table = format_table(*condition_table(summary), width=width, optional=OPTIONAL_COLUMNS)
    return "\n".join([*verdict_lines(summary), "", header, table, *table_notes(summary), "", *summary["findings"]])


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    """The answer in at most five short lines, read before the table (the terminal's first lines, the report's
    first screen): whether the bits repeat here and which setting changes them; how far the metric moves between
    runs, with its interval; which sources matter, or that this many repeats cannot rank them and how many would
    (the summary's `power`); what op determinism costs, with its interval. Each from figures the summary already
    holds, rounded for reading; a line the study has no condition for is left out."""
    metric = summary["primary_metric"]
    rows = {row["name"]: row for row in summary["conditions"]}
    lines = [_bits_verdict(rows), _spread_verdict(summary["conditions"], metric),
             *_sources_verdict(summary["conditions"], summary.get("power"), metric),
             _cost_verdict(summary.get("determinism_cost"), rows)]
    return [line for line in lines if line]


def _readable(value: float) -> str:
    """Two significant digits, as a person reads a spread: 0.39, 0.027, 1.0, 12, 140."""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.2g}"


def _bits_verdict(rows: dict[str, dict[str, Any]]) -> str:
    """`Bitwise reproducible here: yes, 10 control runs alike; op determinism off and XLA on change the bits.`:
    control's verdict, and the settings (kernels, env: variants: control's seeds, one thing changed) whose runs
    differ from control's bits or among themselves."""
    said = "Bitwise reproducible here:"
    control = rows.get(CONTROL)
    if not control:
        return f"{said} untested (the study has no control condition)."
    if control["bitwise_reproducible"] is None:
        return f"{said} untested, {'one control run' if control['n_ok'] else 'no control run'} finished " \
               "(it takes --repeats=2 or more)."
    if not control["bitwise_reproducible"]:
        return f"{said} NO, {control['n_ok']} control runs with equal seeds gave {control['unique_weight_hashes']} " \
               "different weights."
    settings = [row for row in rows.values() if row["seeds_fixed"] and row["name"] != CONTROL and row["n_ok"]
                and row["matches_control_bitwise"] is not None]
    changing = ["op determinism off" if row["name"] == KERNELS else row["varies"] for row in settings
                if not row["matches_control_bitwise"] or row["bitwise_reproducible"] is False]
    said = f"{said} yes, {control['n_ok']} control runs alike"
    if changing:
        return f"{said}; {_and(changing)} change{'s' if len(changing) == 1 else ''} the bits."
    if settings:
        return f"{said}; none of the {len(settings)} other settings tried changes the bits."
    return f"{said}."


def _spread_verdict(rows: list[dict[str, Any]], metric: str) -> str | None:
    """`Run to run, test accuracy moves by SD 0.39 points (95% CI [0.27, 0.72]) with every seed varied.`: `all`'s
    SD, else that of the condition that moves the metric most."""
    varied = [row for row in rows if not row["expects_identical_repeats"] and row[metric]]
    if not varied:
        return None
    row = next((r for r in varied if r["name"] == ALL), max(varied, key=lambda r: r[metric]["sd"]))
    where = "with every seed varied" if row["name"] == ALL else f"in {row['name']}, the most of any condition"
    subject = metric.replace("_", " ")
    described, scale = row[metric], stats.display_scale(metric)
    if not described["sd_ci95"]:
        return f"Run to run: one run of {row['name']} finished; how far {subject} moves takes two (--repeats=2)."
    if described["sd"] == 0 and len(varied) == sum(1 for r in varied if r[metric]["sd"] == 0):
        return f"Run to run, {subject} does not move: every condition's runs scored alike."
    low, high = described["sd_ci95"]
    unit = " points" if stats.higher_is_better(metric) else ""
    return f"Run to run, {subject} moves by SD {_readable(described['sd'] * scale)}{unit} (95% CI " \
           f"[{_readable(low * scale)}, {_readable(high * scale)}]) {where}."


def _sources_verdict(rows: list[dict[str, Any]], block: dict[str, Any] | None, metric: str) -> list[str]:
    """The sources, largest first, as the summary's `power` ranks them: those this many repeats cannot tell apart
    together, then how many repeats would tell the first such pair apart. Without a ranking (fewer than two
    sources that move the metric), which source moves it, or that one run each shows no spread."""
    if block:
        pairs = block["ranked_pairs"]
        tiers = [[pairs[0]["a"]]]
        for pair in pairs:
            if pair["separable"]:
                tiers.append([pair["b"]])
            else:
                tiers[-1].append(pair["b"])
        apart = f"not told apart at {block['repeats']} repeats"
        ranking = " > ".join(tier[0] if len(tier) == 1 else f"{', '.join(tier)} ({apart})" for tier in tiers)
        tied = next((pair for pair in pairs if not pair["separable"]), None)
        if not tied:
            return [f"Sources, largest first: {ranking} (each apart at 95%)."]
        needed = f"About {tied['repeats_needed']} repeats each would tell {tied['a']} from {tied['b']} at 80% " \
                 "power." if tied["repeats_needed"] else f"No feasible number of repeats would tell {tied['a']} " \
                 f"from {tied['b']}: their SDs are too close."
        return [f"Sources, largest first: {ranking}.", needed]
    sources = [row for row in rows if not row["expects_identical_repeats"] and row["name"] != ALL and row[metric]]
    if not sources:
        return []
    if all(row[metric]["n"] < 2 for row in sources):
        return ["Sources: one run each shows no spread to rank (it takes --repeats=2 or more)."]
    moving = [row["name"] for row in sources if row[metric]["n"] >= 2 and row[metric]["sd"] > 0]
    subject = metric.replace("_", " ")
    if len(sources) == 1:
        return [f"Sources: {sources[0]['name']} alone was varied; vary others to rank them."]
    if moving:
        return [f"Sources: of {_and([row['name'] for row in sources])}, only {moving[0]} moves {subject}."]
    return [f"Sources: none of {_and([row['name'] for row in sources])} moves {subject} here."]


def _cost_verdict(block: dict[str, Any] | None, rows: dict[str, dict[str, Any]]) -> str | None:
    """Op determinism's cost in step time with its interval (`Deterministic kernels cost +9.2% step time (95% CI
    [+1.8%, +17.2%]).`), or that it was not measured in a study with control and kernels."""
    if block:
        return _component_sentence("Deterministic kernels", block["components"].get("op_determinism"), "step time",
                                   units=False)
    if CONTROL in rows and KERNELS in rows:
        return "Deterministic kernels' cost was not measured (the study has no cost.json; --cost_blocks=0 skips it)."
    return None


def table_notes(summary: dict[str, Any]) -> list[str]:
    """The lines under the conditions' table that its marks need (the terminal's, the report's HTML and
    Markdown alike): `~` is a ratio of trials timed apart."""
    return [TIMED_APART_NOTE] if any((row["step_time_ratio_vs_control"] or {}).get("method") == TIMED_APART
                                     for row in summary["conditions"]) else []


def condition_table(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(headers, rows): a row per condition, as the terminal and the report show it."""
    metric = summary["primary_metric"]
    scale = stats.display_scale(metric)
    label = "test acc %" if stats.higher_is_better(metric) else "test loss"
    rows = []
    for row in summary["conditions"]:
        described = row[metric]
        ci = described and described["sd_ci95"]
        ratio = row["step_time_ratio_vs_control"]
        rows.append([
            row["name"], "nothing here" if row.get("varies_nothing") else row["varies"],
            "on" if row["determinism"] else "off",
            f"{row['n_ok']}/{row['n_planned']}",
            _mean_text(described, scale),
            f"{described['sd'] * scale:.3f}" if described else "-",
            f"[{ci[0] * scale:.3f}, {ci[1] * scale:.3f}]" if ci else "-",
            f"{row['test_loss']['sd']:.2g}" if metric == "test_accuracy" and row["test_loss"] else None,
            _share_text(row) if row["sd_share_of_all"] is not None else "-",
            _churn_text(row),
            f"{row['unique_weight_hashes']}/{row['n_ok']}",
            _step_text(row),
            _ratio_text(ratio),
            _distribution_text(row.get("distribution_sd")) if metric == "test_accuracy" else None,
        ])
    headers = ["condition", "varies", "det", "ok", label + " mean [95% CI]", "SD", "SD 95% CI", "test loss SD",
               "of all [95% CI]", "churn % [95% CI]", "hashes", "step ms [95% CI]", "vs control", "dist SD [95% CI]"]
    if metric != "test_accuracy":  # The loss is already the metric, and a regression has no classes to churn.
        dropped = (headers.index("test loss SD"), headers.index("churn % [95% CI]"),
                   headers.index("dist SD [95% CI]"))
        headers = [h for i, h in enumerate(headers) if i not in dropped]
        rows = [[cell for i, cell in enumerate(row) if i not in dropped] for row in rows]
    return headers, rows


# What each column of the conditions' table holds (the report's legend under the table). Intervals are 95%, each
# with the coverage tests/analysis/test_coverage.py measured.
COLUMN_MEANINGS = {
    "condition": "what the row's trials vary (docs/reproducibility.md lists the conditions)",
    "varies": "the source of randomness the condition changes between its trials; \"nothing here\" where this "
              "model and data give it nothing to change",
    "det": "op determinism (enable_op_determinism) on or off in the condition's trials",
    "ok": "trials that finished, of those planned",
    "test acc % mean [95% CI]": "the trials' mean test accuracy in percent, with its t-interval",
    "test loss mean [95% CI]": "the trials' mean test loss, with its t-interval",
    "SD": "the standard deviation of the metric between the condition's trials: how far a run moves",
    "SD 95% CI": "the interval of that SD",
    "test loss SD": "the standard deviation of the test loss between the trials",
    "of all [95% CI]": "the condition's SD as a share of `all`'s, where every source varies at once",
    "churn % [95% CI]": "the share of test examples two trials classify differently, averaged over pairs",
    "hashes": "distinct final-weight hashes among the trials that finished: 1 means bitwise identical runs",
    "step ms [95% CI]": "the median training step time in milliseconds, with its interval (\"one sample\" where "
                        "there is one)",
    "vs control": "the step time as a ratio of control's (~: timed in separate trials, not interleaved)",
    "dist SD [95% CI]": "the distribution-wise SD: the part of the SD beyond a finite test set's example-by-example "
                        "noise, which another test set would also see, with its interval",
}


def column_legend(headers: list[str]) -> list[tuple[str, str]]:
    """(column, meaning) for each column of a conditions' table, in its order."""
    return [(header, COLUMN_MEANINGS[header]) for header in headers if header in COLUMN_MEANINGS]


def trainer_text(summary: dict[str, Any]) -> str:
    """`, trained by the model's own Keras fit` for a keras_fit study (with why, where the model's own train
    step chose it); nothing for the harness loop."""
    if summary.get("trainer"):
        return f", trained by the model's own Keras fit ({summary['trainer']['reason']})"
    return ", trained by the model's own Keras fit" if summary["config"].get("trainer") == "keras_fit" else ""


def _mean_text(described: dict[str, Any] | None, scale: float) -> str:
    """The mean with its t-interval, `84.17 [83.95, 84.39]`; `84.17 (one sample)` for one run."""
    if not described:
        return "-"
    ci = described.get("mean_ci95")
    if not ci:
        return f"{described['mean'] * scale:.2f} (one sample)"
    return f"{described['mean'] * scale:.2f} [{ci[0] * scale:.2f}, {ci[1] * scale:.2f}]"


def _step_text(row: dict[str, Any]) -> str:
    """The median step with its distribution-free interval over the trials; `(one sample)` for a single
    measurement (a vectorized group's step is one), `(3 samples)` for too few for an interval (below 5)."""
    if not row["step_ms_median"]:
        return "-"
    ci = row.get("step_ms_ci95")
    if ci:
        return f"{row['step_ms_median']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    samples = len(row.get("step_ms") or [])
    return f"{row['step_ms_median']:.3f} ({'one sample' if samples <= 1 else f'{samples} samples'})"


def _churn_text(row: dict[str, Any]) -> str:
    """Churn: the mean share of test examples two runs predict differently, in percent, with its interval."""
    churn, ci = row["mean_pairwise_disagreement"], row.get("disagreement_ci95")
    if churn is None:
        return "-"
    return f"{churn * 100:.2f} [{ci[0] * 100:.2f}, {ci[1] * 100:.2f}]" if ci else f"{churn * 100:.2f}"


def _distribution_text(described: dict[str, Any] | None) -> str:
    """The distribution-wise SD in points with its interval (Jordan 2024), or - without 3 runs' correctness."""
    if not described:
        return "-"
    return f"{described['sd'] * 100:.2f} [{described['ci95'][0] * 100:.2f}, {described['ci95'][1] * 100:.2f}]"


def _ratio_text(ratio: dict[str, Any] | None) -> str:
    if not ratio:
        return "-"
    if ratio.get("method") == TIMED_APART:
        return f"~{ratio['ratio']:.2f}x"
    if not ratio["ci95"]:
        return f"{ratio['ratio']:.2f}x"
    return f"{ratio['ratio']:.2f}x [{ratio['ci95'][0]:.2f}, {ratio['ci95'][1]:.2f}]"


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Atomic replace: readers see the old summary or the new one."""
    write_json(path, summary)


def _vectorized(record: dict[str, Any]) -> dict[str, Any]:
    """The record's place in its vectorized group ({replicas, index, path}); {} for a trial that trained alone."""
    return (record.get("outputs") or {}).get("vectorized") or {}
