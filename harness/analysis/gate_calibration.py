"""The gate's thresholds calibrated from measured variance: N baseline studies of the same configuration.

A threshold is the change the gate treats as real; set by hand it is a guess, and the same configuration
run again already moves some numbers. Calibrated, each threshold is the largest change the baseline studies
showed among themselves (each rule still fails only when the candidate is worse beyond it *and* its own
test or interval says so, gate_rules.py):
- `accuracy_tolerance` (`loss_tolerance` for a regression): the largest difference of a condition's mean
  between two baseline studies, at least what new bits (another CPU or TensorFlow) move a fixed-seed run by,
  1.96 x sqrt(2) x the largest SD the seeds give, and at least one test example;
- `variance_factor`: the largest ratio of `all`'s SD between two baseline studies, at least 1;
- `max_slowdown`: the largest ratio of a timed condition's step time between two baseline studies, minus 1,
  never below the default: studies of one session cannot show how this machine's speed moves between
  sessions (2-3x here), and a tighter limit would fail builds on it;
- `max_determinism_overhead`: the highest upper end of the baseline studies' cost intervals, minus 1: the
  most determinism cost this configuration showed, so a candidate fails only when its whole interval lies
  beyond it.
The rules file says what each value came from (`calibrated_from`), which the gate reads past.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from harness.analysis import stats
from harness.analysis.gate_rules import DEFAULT_THRESHOLDS, too_few_text
from harness.errors import UsageError
from harness.redaction import redact_text
from harness.studies.conditions import ALL, CONTROL, KERNELS

MIN_STUDIES = 2


def calibrate(summaries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The rules file's content: calibrated thresholds, the defaults for the rest, and `calibrated_from`.
    `summaries`: (name, summary) of each baseline study, all of one benchmark and metric."""
    if len(summaries) < MIN_STUDIES:
        raise UsageError(f"calibrating the gate takes at least {MIN_STUDIES} baseline studies of the same "
                         f"configuration (got {len(summaries)}); run the study again, e.g. make gate-baseline RUNS=3")
    names = [name for name, _ in summaries]
    first = summaries[0][1]
    for name, summary in summaries[1:]:
        for key in ("benchmark", "primary_metric"):
            if summary[key] != first[key]:
                raise UsageError(f"{name} is {key} {summary[key]!r} but {names[0]} is {first[key]!r}; calibrate "
                                 "from studies of one configuration")
    metric = first["primary_metric"]
    rows = [{row["name"]: row for row in summary["conditions"]} for _, summary in summaries]
    shared = [name for name in rows[0] if all(name in other for other in rows[1:])]
    thresholds, sources = dict(DEFAULT_THRESHOLDS), {}

    # Accuracy (or loss): the largest difference of one condition's mean between two studies.
    means = {name: [r[name][metric]["mean"] for r in rows if r[name].get(metric)] for name in shared}
    widest, where = 0.0, None
    for name, values in means.items():
        for a, b in itertools.combinations(values, 2):
            if abs(a - b) > widest:
                widest, where = abs(a - b), name
    # What a change of bits (another CPU, TensorFlow, kernel) moves a fixed-seed run by: it is then a new
    # draw of the seeds, so two such runs differ by up to 1.96 x sqrt(2) x the SD the seeds give (the largest
    # of a seed-varied condition's). Fixed-seed studies repeat bit for bit, so their spread alone is 0.
    seed_sd = max((r[name][metric]["sd"] for r in rows for name in shared
                   if not r[name]["expects_identical_repeats"] and r[name].get(metric)), default=0.0)
    redraw = 1.96 * math.sqrt(2) * seed_sd
    if stats.higher_is_better(metric):
        examples = min((r[CONTROL].get("distribution_sd") or {}).get("examples") or 0 for r in rows
                       if CONTROL in r) or 0
        floor = 1.0 / examples if examples else 0.0
        thresholds["accuracy_tolerance"] = max(widest, redraw, floor)
        sources["accuracy_tolerance"] = (f"largest difference of a condition's mean between studies: "
                                         f"{widest * 100:.3g} points" + (f" ({where})" if where else "")
                                         + f"; at least what new bits move a fixed-seed run by, 1.96 x sqrt(2) x "
                                         f"the seeds' largest SD: {redraw * 100:.3g} points"
                                         + (f"; at least one test example of {examples}: {floor * 100:.3g} points"
                                            if floor else ""))
    else:
        smallest = min((v for values in means.values() for v in values if v > 0), default=0.0)
        thresholds["loss_tolerance"] = widest / smallest if smallest else DEFAULT_THRESHOLDS["loss_tolerance"]
        sources["loss_tolerance"] = f"largest difference of a condition's mean loss between studies: {widest:.4g}"

    # Variance: the largest ratio of all's SD between two studies.
    sds = [r[ALL][metric]["sd"] for r in rows if ALL in r and r[ALL].get(metric)]
    ratios = [max(a, b) / min(a, b) for a, b in itertools.combinations(sds, 2) if min(a, b) > 0]
    thresholds["variance_factor"] = max([1.0, *ratios])
    sources["variance_factor"] = (f"largest ratio of all's SD between studies: {max(ratios):.3g}x" if ratios else
                                  "no two studies with all's SD above 0: 1x")

    # Speed: the largest ratio of a timed condition's step between two studies, never below the default.
    steps = [(name, [r[name]["step_ms"] for r in rows if r[name].get("step_ms")]) for name in (CONTROL, KERNELS)
             if name in shared]
    ratios = [(ratio, len(a), len(b)) for _, per_study in steps for a, b in itertools.combinations(per_study, 2)
              if (ratio := stats.step_time_ratio(a, b))]
    widest = max(ratios, key=lambda found: max(found[0]["ratio"], 1 / found[0]["ratio"]), default=None)
    spread = max(widest[0]["ratio"], 1 / widest[0]["ratio"]) if widest else 1.0
    sampled = "" if not widest or widest[0]["ci95"] else f" ({too_few_text(widest[1], widest[2])})"
    thresholds["max_slowdown"] = max(spread - 1, DEFAULT_THRESHOLDS["max_slowdown"])
    sources["max_slowdown"] = (f"largest ratio of a timed condition's step between studies: {spread:.3g}x{sampled}; "
                               f"never below the default {DEFAULT_THRESHOLDS['max_slowdown']:g} (this machine's speed "
                               "moves between sessions, which studies of one session cannot show)")

    # Overhead: the most determinism cost the studies showed (their intervals' upper ends).
    highs = [summary["determinism_cost"]["ci95"][1] for _, summary in summaries
             if (summary.get("determinism_cost") or {}).get("ci95")]
    if highs:
        thresholds["max_determinism_overhead"] = max(max(highs) - 1, 0.0)
        sources["max_determinism_overhead"] = (f"highest upper end of the studies' cost intervals: "
                                               f"{max(highs) - 1:+.1%}")
    else:
        sources["max_determinism_overhead"] = "no study measured the cost: the default"
    # The studies' names are the user's paths or URLs: written and printed through the one redaction.
    return {**thresholds, "calibrated_from": {"studies": [redact_text(name) for name in names], "why": sources}}


def calibration_table(rules: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): each threshold, its calibrated value and what it came from."""
    why = rules["calibrated_from"]["why"]
    return ["threshold", "value", "from"], [[name, f"{rules[name]:.4g}", text] for name, text in why.items()]
