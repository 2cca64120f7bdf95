"""The doctor's verdicts: where two observed runs of a user's Keras script first part, why, in plain
words, and the smallest change that makes the script reproducible (`python -m harness.doctor` runs
the script and prints these); and, within one run, whether the models one builder made with the same
arguments came out equal, and why not.

Fits are compared position by position (the n-th variable, the n-th generator), not by name: two
models built in one process get other names (`sequential`, `sequential_1`) for the same layers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.analysis import script_edits

# What a first difference points to, in the order a run decides them. At the start of a fit: the
# initial weights, and the arrays handed to it (other values); then per step the batch (the data order,
# or values drawn at random where the data is a pipeline), the dropout state, or, with all of those
# equal, a kernel.
CAUSES = ("init", "data_values", "data", "dropout", "kernel")


def _in_order(values: dict[str, Any] | None) -> list[Any]:
    return list((values or {}).values())


def data_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """"values" where the arrays handed to the two fits hold other values, "order" where the same rows come in
    another order, None where they are equal or unknown (a tf.data pipeline)."""
    first, second = a.get("data_sha256"), b.get("data_sha256")
    if not first or not second or list(first) != list(second):
        return None if not first or not second else "values"
    if all(first[name]["values"] == second[name]["values"] for name in first):
        return None
    return "order" if all(first[name]["rows"] == second[name]["rows"] for name in first) else "values"


def differing_calls(a: dict[str, Any], b: dict[str, Any], kind: str = "random_calls_before") -> list[dict[str, Any]]:
    """The random calls the user's code made before the fit that drew other values in the two runs (matched
    in the order they were made)."""
    return [x for x, y in zip(a.get(kind, []), b.get(kind, []), strict=False)
            if (x["call"], x["line"]) == (y["call"], y["line"]) and x.get("value_sha256") != y.get("value_sha256")]


def differing_generators(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The random layers (their paths) whose SeedGenerator states differ between two runs of a fit at its start:
    they draw other dropout (or noise) masks at every step."""
    generators_a, generators_b = _in_order(a.get("seed_generators")), _in_order(b.get("seed_generators"))
    paths = list(a.get("seed_generators") or {})
    return [paths[i] for i, (x, y) in enumerate(zip(generators_a, generators_b, strict=False)) if x != y]


def compare_fits(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Where two runs of one fit first differ (or two fits of one run), and every cause the observations show:
    at the start, other initial weights, other data values and other dropout states can all hold, and another
    order of the batches beside them (`causes` lists each; `cause` is the first)."""
    found = {"fit": a["fit"], "model": a["model"], "line": a["line"], "first_step": None, "variables": []}
    starts, initial_a, initial_b = [], _in_order(a.get("initial")), _in_order(b.get("initial"))
    if initial_a != initial_b:
        names = list(a.get("initial") or {})
        found["variables"] = [names[i] for i, (x, y) in enumerate(zip(initial_a, initial_b, strict=False)) if x != y]
        starts.append("init")
    data = data_difference(a, b)
    if data == "values":
        starts.append("data_values")
    generators = differing_generators(a, b)
    steps = min(len(a["steps"]), len(b["steps"]))
    weights_step = next((step for step in range(steps) if a["steps"][step]["weights"] != b["steps"][step]["weights"]),
                        None)
    # The batches hold the inputs, not the weights, so another order shows even under other initial weights or
    # dropout states; each is a cause with its own fix, that no other may hide.
    order = next((step for step in range(steps) if a["steps"][step]["batch"] != b["steps"][step]["batch"]), None)
    if order is None and data == "order":
        order = 0
    if order is not None and not starts and data is None and not a.get("data_sha256") and differing_calls(a, b):
        # The arrays are not known (a pipeline) but values drawn at random before the fit differ: other values,
        # not another order, as far as the doctor can tell.
        return {**found, "cause": "data_values", "causes": ["data_values"], "first_step": order}
    if order is not None and "data_values" not in starts:
        starts.append("data")
        found["data_first_step"] = order
    # Other dropout states matter where the weights part (a Dropout(0.0) draws masks that change nothing).
    if generators and (starts or weights_step is not None):
        starts.append("dropout")
        found["generators"] = generators
    if weights_step is not None and not {"init", "data_values", "dropout"} & set(starts) and (
            order is None or weights_step < order):  # equal starts and batches, yet the weights part: an op
        starts.insert(0, "kernel")
    if not starts:
        if weights_step is not None:
            return {**found, "cause": "kernel", "causes": ["kernel"], "first_step": weights_step}
        return {**found, "cause": None, "causes": [], "steps_compared": steps}
    if starts[0] == "data":
        found["first_step"] = order
    elif starts[0] == "dropout":
        found.update(first_step=weights_step, variables=generators)
    elif starts[0] == "kernel":
        found["first_step"] = weights_step
    return {**found, "cause": starts[0], "causes": starts}


def runs_match(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Two observed runs fitted as many models, each bitwise the same over the steps observed."""
    return len(a) == len(b) and all(compare_fits(x, y)["cause"] is None for x, y in zip(a, b, strict=True))


def explain(found: dict[str, Any], run: dict[str, Any], other: dict[str, Any]) -> str:
    """The finding for one fitted model (`run`: its observation in the first run, `other`: in the second): every
    cause its observations show, each with the line that made it where there is one."""
    where = f"the model fitted at {found['line'] or 'an unknown line'} ({found['model']})"
    said = seeding_said(run["seeding_before"])
    causes = found.get("causes") or ([found["cause"]] if found["cause"] else [])
    arrays_equal = bool(run.get("data_sha256")) and data_difference(run, other) is None
    if len(causes) > 1 or causes[:1] in (["init"], ["data_values"]):
        parts = []
        if "kernel" in causes:
            parts.append(f"part after step {found['first_step']} with equal initial weights and batches (an op "
                         "computed differently)")
        if "init" in causes:
            parts.append(f"start from different initial weights ({len(found['variables'])} of "
                         f"{len(run['initial'])} variables differ)")
        if "data_values" in causes:
            parts.append(f"are given other data: {values_source(run, other)}")
        if "data" in causes:
            parts.append(f"see the examples in another order (batch {found['data_first_step']} holds other "
                         f"examples): {order_source(run, arrays_equal)}")
        if "dropout" in causes:
            parts.append(f"draw other dropout masks: the SeedGenerator states of {', '.join(found['generators'])} "
                         "differ (an unseeded generator takes its seed when its layer is built)")
        joined = " and ".join(parts) if len(parts) < 3 else f"differ in {len(parts)} ways: they " + "; they ".join(
            parts[:-1]) + f"; and they {parts[-1]}"
        text = f"{where}: the two runs {joined}."
        if "init" in causes:
            text += f" Before the fit the script made {said}; {init_reason(run['seeding_before'])}."
        return text
    cause = found["cause"]
    if cause == "data":
        source = order_source(run, arrays_equal)
        return (f"{where}: same initial weights, but batch {found['first_step']} holds other examples: the data "
                f"order differs. {source[0].upper() + source[1:]}. Seeding the script made before the fit: {said}.")
    if cause == "dropout":
        return (f"{where}: same initial weights and batches, but the weights differ after step "
                f"{found['first_step']}, and the dropout randomness differs: the SeedGenerator states of "
                f"{', '.join(found['variables'])} are not equal between runs (an unseeded generator takes its "
                f"seed when its layer is built).")
    if cause == "kernel":
        return (f"{where}: initial weights, batches and dropout states are equal, yet the weights differ after step "
                f"{found['first_step']}: an op computed differently. Turn on "
                "tf.config.experimental.enable_op_determinism(); python -m harness.scan names ops known to need it.")
    return f"{where}: the two runs are bitwise identical over the {found['steps_compared']} steps observed."


def seeding_said(seeding: list[dict[str, Any]]) -> str:
    """The seeding calls made before a fit that decide its random state: the last of each kind (an earlier
    `np.random.seed(1)` is undone by a later `np.random.seed(2)`), and how many earlier ones there were."""
    last = {s["call"]: s for s in seeding}
    kept = [s for s in seeding if last[s["call"]] is s]
    said = ", ".join(dict.fromkeys(f"{s['call']}({s['seed']}) at {s['line'] or '?'}" for s in kept)) or \
        "no seeding call"
    earlier = len(seeding) - len(kept)
    return said + (f" (the last of each kind; {earlier} earlier seeding call{'s' * (earlier != 1)} before them)"
                   if earlier else "")


def order_source(run: dict[str, Any], arrays_equal: bool = False) -> str:
    """Where another order of the same examples comes from: an unseeded shuffle the script made, or fit's own
    (and, where the arrays handed to fit are not known to be equal, maybe their order too)."""
    unseeded = dict.fromkeys(f"{c['call']} at {c['line']}" for c in run.get("data_calls_before", [])
                             if not c["seeded"])
    if unseeded:
        return (f"the order comes from {', '.join(unseeded)}, which no seed reached (no seed argument, and no "
                "seeding call for it before)")
    if run["shuffle"] and run["data"] not in ("DatasetV2", "_PrefetchDataset", "PrefetchDataset"):
        return ("fit(shuffle=True), the default for arrays, draws each epoch's order from the global seed"
                + ("" if arrays_equal else ", and the data may arrive in another order too"))
    return ("fit does not shuffle here, so the data arrived in another order: an unseeded permutation or shuffle "
            "before the fit")


def init_reason(seeding: list[dict[str, Any]]) -> str:
    if any(s["call"] == "tf.random.set_seed" for s in seeding) and \
            not any(s["call"] == "keras.utils.set_random_seed" for s in seeding):
        return ("tf.random.set_seed alone does not reach Keras 3's initializers, which draw from Keras's own seed "
                "generator")
    return "nothing seeds Keras's initializers before the model is built"


def values_source(run: dict[str, Any], other: dict[str, Any]) -> str:
    """Why the data's values differ: the random calls that drew them, with their lines."""
    named = "the arrays handed to fit" if run.get("data_sha256") else "the data"
    differing = differing_calls(run, other) or differing_calls(run, other, "data_calls_before")
    generators = dict.fromkeys(f"np.random.default_rng() at {c['line']}" for c in run.get("data_calls_before", [])
                               if c["call"] == "np.random.default_rng" and not c["seeded"])
    if not differing and generators:
        # A Generator's own draws cannot be watched, only its making.
        return (f"{named} hold other values in the two runs, drawn from {', '.join(generators)}, made without a "
                "seed (no global seed reaches a NumPy Generator)")
    if not differing:
        return (f"{named} hold other values in the two runs, drawn by no random call the doctor watches (a file "
                "that changed between the runs, the clock, or a generator it does not see)")
    said = f"{named} hold other values in the two runs, drawn by {_calls_said(differing)}"
    # Rows put in another order as well (an unseeded permutation of random data): a second source, named too.
    reordered = [c for c in differing_calls(run, other, "data_calls_before")
                 if c not in differing and c["call"] != "np.random.default_rng"]
    return said + (f", and put in another order by {_calls_said(reordered)}" if reordered else "")


def _calls_said(calls: list[dict[str, Any]]) -> str:
    lines = ", ".join(dict.fromkeys(f"{c['call']} at {c['line']}" for c in calls))
    unseeded = any(not c["seeded"] or c["call"] == "np.random.default_rng" for c in calls)
    return f"{lines}, which " + ("no seed reached" if unseeded else "drew other numbers although a seed was set "
                                                                    "before it")


def within_run(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fits of one run whose models one builder made with the same arguments, on the same data (a loop
    over "identical" runs, or the same model trained twice): per group, whether they came out equal, and
    where the first that did not parted from the first of them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for fit in fits:
        origin = fit.get("built_by") or {}
        if not origin.get("built_at"):
            continue
        builder = [origin["function"], origin["line"], origin["arguments"]] if origin["function"] \
            else origin["built_at"]
        key = json.dumps([builder, fit.get("parameters"), len(fit.get("initial") or {}), fit.get("data_sha256")],
                         sort_keys=True, default=str)
        groups.setdefault(key, []).append(fit)
    found = []
    for members in groups.values():
        if len(members) < 2:
            continue
        first = members[0]
        comparisons = [compare_fits(first, other) for other in members[1:]]
        differing = next((c for c in comparisons if c["cause"]), None)
        found.append({"fits": [m["fit"] for m in members], "lines": [m["line"] for m in members],
                      "built_by": first["built_by"], "optimizer": first.get("optimizer"),
                      "cause": differing["cause"] if differing else None,
                      "causes": differing["causes"] if differing else [],
                      "first_step": differing["first_step"] if differing else None,
                      "steps_compared": min(len(m["steps"]) for m in members)})
    return found


def describe_builder(origin: dict[str, Any]) -> str:
    if not origin.get("function"):
        return f"built at {origin['built_at']}"
    arguments = ", ".join(f"{k}={v}" for k, v in (origin.get("arguments") or {}).items())
    return f"built by {origin['function']}({arguments})"


def explain_within(group: dict[str, Any], optimizer_evidence: str | None) -> str:
    """One group of same-builder fits of one run, in plain words: equal, or why not, and whether the
    optimizer is to blame."""
    n, origin = len(group["fits"]), group["built_by"]
    lines = ", ".join(dict.fromkeys(str(line) for line in group["lines"]))
    head = f"Within one run, the {n} models {describe_builder(origin)} and fitted at {lines}"
    if group["cause"] is None:
        return f"{head} are bitwise identical over the {group['steps_compared']} steps observed."
    why = {
        "init": "they start from different initial weights: each build draws its weights from the global random "
                "state, which every earlier build (and fit) advanced; a seed set at the top of the script seeds "
                "the first build only, and tf.random.set_seed does not reach Keras's generator at all",
        "data": f"batch {group['first_step']} holds other examples: fit's shuffle draws from the global random "
                "state, which the earlier fit advanced",
        "dropout": "their dropout masks differ: each Dropout layer's SeedGenerator takes its seed from the global "
                   "random state when the layer is made, and every earlier build advanced it",
        "data_values": "they are given other data, drawn at random between the fits",
        "kernel": f"the weights part after step {group['first_step']} with equal starts and batches: an op "
                  "computed differently",
    }[group["cause"]]
    text = f"{head} differ from each other: {why}."
    optimizer = group.get("optimizer") or "the optimizer"
    if group["cause"] != "kernel" and optimizer_evidence:
        text += f" {optimizer} is not a source: {optimizer_evidence}."
    return text


# The seeding the fix adds to a builder, named in what the doctor prints.
SEED_ARGUMENT = "seed"


def builder_fix(script: Path, group: dict[str, Any]) -> list[dict[str, Any]]:
    """Seeding inside the builder, so each build starts from the same state: keras.utils.set_random_seed with
    the builder's own `seed` argument where it has one. [] where the models are built at top level."""
    origin = group["built_by"]
    if not origin.get("function"):
        return []
    seed = SEED_ARGUMENT if SEED_ARGUMENT in (origin.get("arguments") or {}) else None
    return script_edits.seeding_in_function(script, origin["line"], seed)


def fix_for(findings: list[dict[str, Any]], run: list[dict[str, Any]], script: Path) -> list[dict[str, Any]]:
    """The smallest change, as edits of the script: keras.utils.set_random_seed after its imports (importing keras
    where the script has no name for it); and a seed for each np.random.default_rng made without one where the
    data differ, since a Generator follows no global seed."""
    edits = script_edits.seeding_at_top(script)
    lines = dict.fromkeys(c["line"] for found, fit in zip(findings, run, strict=False)
                          if {"data", "data_values"} & set(found.get("causes") or [found["cause"]])
                          for c in fit.get("data_calls_before", []) + fit.get("random_calls_before", [])
                          if c["call"] == "np.random.default_rng" and not c["seeded"])
    for line in lines:
        name, _, number = line.rpartition(":")
        if name == script.name:
            edit = script_edits.seed_argument_fix(script, int(number), "default_rng")
            if edit:
                edits.append(edit)
    return edits
