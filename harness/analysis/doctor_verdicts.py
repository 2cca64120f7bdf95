"""The doctor's verdicts: where two observed runs of a user's Keras script first part, why, in plain
words, and the smallest change that makes the script reproducible (`python -m harness.doctor` runs
the script and prints these).
"""

from __future__ import annotations

from typing import Any

FIX_SEED = 0
FIX = (f"keras.utils.set_random_seed({FIX_SEED})  # seeds Python's random, NumPy, TensorFlow and Keras, "
       "before anything random happens")


def compare_fits(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Where two runs of one fit first differ, and the cause that position points to."""
    found = {"fit": a["fit"], "model": a["model"], "line": a["line"], "first_step": None, "variables": []}
    if a.get("initial") != b.get("initial"):
        names = [n for n in a.get("initial", {}) if a["initial"].get(n) != b.get("initial", {}).get(n)]
        return {**found, "cause": "init", "variables": names}
    steps = min(len(a["steps"]), len(b["steps"]))
    for step in range(steps):
        if a["steps"][step]["batch"] != b["steps"][step]["batch"]:
            return {**found, "cause": "data", "first_step": step}
        if a["steps"][step]["weights"] != b["steps"][step]["weights"]:
            if a.get("seed_generators") != b.get("seed_generators"):
                layers = [p for p in a["seed_generators"] if a["seed_generators"][p] != b["seed_generators"].get(p)]
                return {**found, "cause": "dropout", "first_step": step, "variables": layers}
            return {**found, "cause": "kernel", "first_step": step}
    return {**found, "cause": None, "steps_compared": steps}


def runs_match(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Two observed runs fitted as many models, each bitwise the same over the steps observed."""
    return len(a) == len(b) and all(compare_fits(x, y)["cause"] is None for x, y in zip(a, b, strict=True))


def explain(found: dict[str, Any], run: dict[str, Any]) -> str:
    """The finding for one fitted model, in plain words."""
    where = f"the model fitted at {found['line'] or 'an unknown line'} ({found['model']})"
    seeding = run["seeding_before"]
    calls = dict.fromkeys(f"{s['call']}({s['seed']}) at {s['line'] or '?'}" for s in seeding)
    said = ", ".join(calls) or "no seeding call"
    cause = found["cause"]
    if cause == "init":
        reason = ("tf.random.set_seed alone does not reach Keras 3's initializers, which draw from Keras's own "
                  "seed generator" if any(s["call"] == "tf.random.set_seed" for s in seeding) and
                  not any(s["call"] == "keras.utils.set_random_seed" for s in seeding)
                  else "nothing seeds Keras's initializers before the model is built")
        return (f"{where}: the two runs start from different initial weights "
                f"({len(found['variables'])} of {len(run['initial'])} variables differ). Before the fit the script "
                f"made {said}; {reason}.")
    if cause == "data":
        unseeded = dict.fromkeys(f"{c['call']} at {c['line']}" for c in run.get("data_calls_before", [])
                                 if not c["seeded"])
        if unseeded:
            source = (f"the order comes from {', '.join(unseeded)}, which no seed reached (no seed argument, "
                      "and no seeding call for it before)")
        elif run["shuffle"] and run["data"] not in ("DatasetV2", "_PrefetchDataset", "PrefetchDataset"):
            source = ("fit(shuffle=True), the default for arrays, draws each epoch's order from the global seed, "
                      "and the data may arrive in another order too")
        else:
            source = ("fit does not shuffle here, so the data arrived in another order: an unseeded permutation "
                      "or shuffle before the fit")
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


OP_DETERMINISM_FIX = "tf.config.experimental.enable_op_determinism()  # with the seeding the script has"


def fix_for(findings: list[dict[str, Any]], run: list[dict[str, Any]]) -> str:
    """keras.utils.set_random_seed at the top; and a seed for each np.random.default_rng made without one
    where the data order differs, since a Generator follows no global seed."""
    lines = dict.fromkeys(c["line"] for found, fit in zip(findings, run, strict=False) if found["cause"] == "data"
                          for c in fit.get("data_calls_before", [])
                          if c["call"] == "np.random.default_rng" and not c["seeded"])
    if not lines:
        return FIX
    return (f"{FIX}\n    and a seed for np.random.default_rng at {', '.join(lines)}, "
            f"e.g. np.random.default_rng({FIX_SEED})")
