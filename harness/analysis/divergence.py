"""Comparing two runs' per-step traces: where did they first part, and in what?

Traces come from `run_trial(..., trace=True)`: per step, fingerprints of the
loss, of every gradient and of every variable after its update, plus the
initial weights; and per step and layer call, of the layer's inputs, its output
and the gradient into that output (`trial/layer_trace.py`), from which
`first_layer` names the layer where the runs part. `harness.diverge` is the
program around this.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError, first_line
from harness.schema import TRACE_SCHEMA
from harness.table import format_table


def load_trace(path: str | Path) -> dict[str, Any]:
    """A trace: `.npz` from the harness's traced loop, or `.jsonl` from `harness.keras.FingerprintCallback`."""
    if str(path).endswith(".jsonl"):
        return _load_callback_trace(Path(path))
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a single .npy array, not the .npz archive a trace is
            raise ValueError("it holds one array")
        with loaded as data:
            trace = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise UsageError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a trace file") from None
    except Exception as error:  # noqa: BLE001 - np.load fails in many ways on files that are not archives
        raise UsageError(f"{path} is not a trace file written by harness.diverge ({first_line(error)})") from None
    if not {"initial", "steps", "variables", "layers"} <= set(trace):
        raise UsageError(f"{path} is not a trace file written by harness.diverge")
    return trace


def _load_callback_trace(path: Path) -> dict[str, Any]:
    """A `harness.trace/1` JSON-lines trace as the arrays `compare` reads. A fit's callback sees no
    gradients: their columns are zero, and `has_gradients` is False."""
    from harness.studies.records import read_records

    lines = read_records(path) if path.is_file() else None
    if lines is None:
        raise UsageError(f"{path}: no such trace file")
    if not lines or lines[0].get("schema") != TRACE_SCHEMA:
        raise UsageError(f"{path} is not a trace written by harness.keras.FingerprintCallback")
    header, unit = lines[0], lines[0].get("every", "step")
    count = len(header["variables"])
    as_int = lambda text: int(text, 16) if text else 0  # noqa: E731
    rows = [[as_int(line.get("loss")), *[0] * count, *[as_int(f) for f in line["updated"]]]
            for line in lines[1:] if unit in line]
    final = next((line["weights_sha256"] for line in lines if "weights_sha256" in line), "")
    return {"initial": [np.array([as_int(f)], np.uint64) for f in header["initial"]],
            "steps": np.array(rows, np.uint64).reshape(len(rows), 1 + 2 * count),
            "variables": np.array(header["variables"]), "layers": np.array(header["layers"]),
            "weights_sha256": np.array(final), "unit": unit, "has_gradients": False}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The first divergence between two traces; `diverged` False when every compared step matches."""
    names = [str(n) for n in a["variables"]]
    if names != [str(n) for n in b["variables"]]:
        raise UsageError("the two traces are of different models; they cannot be compared step by step")
    layers = [str(layer) for layer in a["layers"]]
    steps = min(len(a["steps"]), len(b["steps"]))
    found: dict[str, Any] = {"steps_compared": steps, "diverged": False, "first_step": None, "stage": None,
                             "variables": [], "layer": None, "differing": None,
                             "steps": {"a": len(a["steps"]), "b": len(b["steps"])}, "unit": a.get("unit", "step"),
                             "has_gradients": bool(a.get("has_gradients", True)),
                             "layers_traced": _has_layer_steps(a) and _has_layer_steps(b), "first_layer": None}
    differs_initially = [n for n, x, y in zip(names, a["initial"], b["initial"], strict=True)
                         if not np.array_equal(x, y)]
    if differs_initially:
        return {**found, "diverged": True, "first_step": 0, "stage": "initial weights",
                "variables": differs_initially, "layer": _layer(differs_initially[0]),
                "differing": {"loss": None, "gradients": [], "updated": differs_initially},
                "first_layer": first_layer(a, b)}
    v = len(names)
    for step in range(steps):
        row_a, row_b = a["steps"][step], b["steps"][step]
        if np.array_equal(row_a, row_b):
            if found["layers_traced"] and not _layer_rows_equal(a, b, step):
                # A layer's output differs and nothing it feeds does (a difference a ReLU or a mask zeroes).
                return {**found, "diverged": True, "first_step": step, "stage": "layer outputs",
                        "differing": {"loss": False, "gradients": [], "updated": []},
                        "first_layer": first_layer(a, b, step)}
            continue
        loss = not np.array_equal(row_a[0], row_b[0])
        gradients = [n for i, n in enumerate(names) if not np.array_equal(row_a[1 + i], row_b[1 + i])]
        updated = [n for i, n in enumerate(names) if not np.array_equal(row_a[1 + v + i], row_b[1 + v + i])]
        # Backprop visits layers last to first: the first differing gradient in that order is
        # where the difference entered the backward pass.
        in_backprop = sorted(gradients, key=lambda n: -layers.index(_layer(n)) if _layer(n) in layers else 0)
        if not a.get("has_gradients", True):  # a fit's callback trace: the weights after the step
            stage, first = "weights (after the step)", updated[:1]
        elif loss:
            stage, first = "forward pass (loss)", in_backprop
        elif gradients:
            stage, first = "backward pass (gradient)", in_backprop[:1]
        else:
            stage, first = "update (optimizer)", updated[:1]
        return {**found, "diverged": True, "first_step": step, "stage": stage, "variables": first,
                "layer": _layer(first[0]) if first else None,
                "differing": {"loss": loss, "gradients": in_backprop, "updated": updated},
                "first_layer": first_layer(a, b, step)}
    if len(a["steps"]) != len(b["steps"]):
        # Equal as far as both went, and one went on: the runs are not the same run.
        return {**found, "diverged": True, "first_step": steps, "stage": "run length"}
    return found


def _has_layer_steps(trace: dict[str, Any]) -> bool:
    return "layer_steps" in trace and len(trace["layer_paths"]) > 0


def _layer_rows_equal(a: dict[str, Any], b: dict[str, Any], step: int) -> bool:
    return np.array_equal(a["layer_steps"][step], b["layer_steps"][step])


def first_layer(a: dict[str, Any], b: dict[str, Any], step: int | None = None) -> dict[str, Any] | None:
    """Where in the model two runs part, from their per-layer fingerprints at `step` (the first step where
    anything differs), or without one (initial weights that differ), at the first step where any layer call's
    inputs, output or output gradient differ. None for traces without them.

    Forward pass: the first layer call, in execution order (a layer inside another comes first), whose output
    differs; if its inputs are equal, the runs part in that layer, and the calls before it agree. Then the
    loss, if every output agrees and the loss does not. Backward pass: the last call (backprop visits them
    last to first) whose output gradient differs; the layer that passed that gradient back is the call after
    it that takes its output as input (by fingerprint), else the next call in execution order."""
    if not (_has_layer_steps(a) and _has_layer_steps(b)):
        return None
    paths, classes = [str(p) for p in a["layer_paths"]], [str(c) for c in a["layer_classes"]]
    other = [str(p) for p in b["layer_paths"]]
    if paths != other:
        shorter = min(len(paths), len(other))
        index = next((i for i in range(shorter) if paths[i] != other[i]), shorter)
        return {"phase": "layer calls", "step": 0, "path": paths[index] if index < len(paths) else None,
                "class": None, "inputs_equal": None, "agreeing": paths[:index], "gradient_into": None,
                "b_path": other[index] if index < len(other) else None}
    found = {"class": None, "inputs_equal": None, "agreeing": [], "gradient_into": None}
    if step is None:
        steps = min(len(a["layer_steps"]), len(b["layer_steps"]))
        step = next((s for s in range(steps) if not _layer_rows_equal(a, b, s)), None)
        if step is None:
            return {**found, "phase": None, "step": None, "path": None, "agreeing": paths}
    if _layer_rows_equal(a, b, step):  # a weight's gradient or its update differs, no layer's
        return {**found, "phase": "weights", "step": step, "path": None, "agreeing": paths}
    equal = np.all(a["layer_steps"][step] == b["layer_steps"][step], axis=-1)  # [calls, (inputs, output, grad)]
    inputs_equal, outputs_equal, gradients_equal = equal[:, 0], equal[:, 1], equal[:, 2]
    if not outputs_equal.all():
        i = int(np.argmin(outputs_equal))
        return {**found, "phase": "forward", "step": step, "path": paths[i], "class": classes[i],
                "inputs_equal": bool(inputs_equal[i]), "agreeing": paths[:i]}
    loss_differs = not np.array_equal(a["steps"][step][0], b["steps"][step][0])
    if loss_differs or gradients_equal.all():
        # Every output agrees and the loss computed from them differs (or, its gradients equal, a layer's
        # inputs differ that no output shows).
        return {**found, "phase": "loss" if loss_differs else "inputs", "step": step, "path": None,
                "agreeing": paths}
    j = max(i for i in range(len(paths)) if not gradients_equal[i])
    if j == len(paths) - 1:  # the gradient into the model's output: the loss's own gradient
        return {**found, "phase": "loss gradient", "step": step, "path": None, "agreeing": paths,
                "gradient_into": paths[j]}
    output = a["layer_steps"][step][j][1]
    consumer = next((k for k in range(j + 1, len(paths)) if np.array_equal(a["layer_steps"][step][k][0], output)),
                    j + 1)
    return {**found, "phase": "backward", "step": step, "path": paths[consumer], "class": classes[consumer],
            "inputs_equal": True, "agreeing": paths, "gradient_into": paths[j]}


def growth(a: dict[str, Any], b: dict[str, Any], reference: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """How fast run B drifts from run A (Summers & Dinneen 2021's one-bit probe), from the weight snapshots
    the traced loop takes after every loop call: the relative distance ||w_B - w_A|| / ||w_A|| per snapshot,
    its growth rate (a least-squares line through log-distance over the later half of the snapshots), and
    the first step at which the two runs' test predictions differ. Without such a step, a `reference` run
    (A with another seed: runs that do predict differently) gives the distance where predictions part,
    and the rate says how many more steps B would need to reach it. None for traces without snapshots."""
    if "snapshot_weights" not in a or "snapshot_weights" not in b:
        return None
    steps = a["snapshot_steps"]
    n = min(len(steps), len(b["snapshot_steps"]))
    steps = [int(s) for s in steps[:n]]
    distance = [_relative_distance(a["snapshot_weights"][i], b["snapshot_weights"][i]) for i in range(n)]
    changed = [float(np.mean(a["snapshot_predictions"][i] != b["snapshot_predictions"][i])) for i in range(n)]
    positive = [(step, d) for step, d in zip(steps, distance, strict=True) if d > 0]
    rate = None
    # The rate of the recent regime, from the later half of the snapshots: a bit's difference jumps in the
    # first steps and grows more slowly after, so a fit over all of them would overstate the pace ahead.
    recent = positive[len(positive) // 2:]
    if len(recent) >= 3:
        x, y = np.array([p[0] for p in recent], float), np.log([p[1] for p in recent])
        rate = float(np.polyfit(x, y, 1)[0])  # d ln(distance) / d step
    first_change = next((step for step, share in zip(steps, changed, strict=True) if share > 0), None)
    found = {"steps": steps, "relative_distance": distance, "predictions_changed": changed,
             "growth_per_step": rate, "first_prediction_change_step": first_change,
             "reference_distance": None, "steps_to_reference": None}
    if reference is not None and "snapshot_weights" in reference:
        last = min(n, len(reference["snapshot_steps"])) - 1
        target = _relative_distance(a["snapshot_weights"][last], reference["snapshot_weights"][last])
        found["reference_distance"] = target
        if first_change is None and rate and rate > 0 and distance[-1] > 0 and target > distance[-1]:
            found["steps_to_reference"] = int(math.ceil(math.log(target / distance[-1]) / rate))
    return found


def plot_growth(found: dict[str, Any], path: Path) -> None:
    """Log-distance against steps, with the reference distance (where predictions part) as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    points = [(s, d) for s, d in zip(found["steps"], found["relative_distance"], strict=True) if d > 0]
    axes.semilogy([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label="run B vs run A")
    if found["reference_distance"]:
        axes.axhline(found["reference_distance"], color="#d62728", linestyle="--", linewidth=1,
                     label="two runs that differ by a seed (their predictions differ)")
    if found["first_prediction_change_step"] is not None:
        axes.axvline(found["first_prediction_change_step"], color="#777777", linestyle=":",
                     label="first test prediction that differs")
    axes.set_xlabel("train step")
    axes.set_ylabel("||w_B - w_A|| / ||w_A||")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _relative_distance(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    scale = float(np.linalg.norm(a))
    return float(np.linalg.norm(a - b.astype(np.float64))) / scale if scale else 0.0


def format_growth(found: dict[str, Any]) -> str:
    """The bit probe in sentences: how far apart, how fast, and when (or in how many steps) predictions part."""
    steps, distance = found["steps"], found["relative_distance"]
    said = [f"Weight distance from run A (||B - A|| / ||A||): {distance[0]:.2e} at step {steps[0]}, "
            f"{distance[-1]:.2e} at step {steps[-1]}."]
    rate = found["growth_per_step"]
    if rate is not None:
        doubling = f", doubling every {math.log(2) / rate:.0f} steps" if rate > 0 else ""
        said.append(f"Over the later half of training it grows by a factor of {math.exp(rate * 100):.3g} per "
                    f"100 steps{doubling}.")
    if found["first_prediction_change_step"] is not None:
        said.append(f"The runs' test predictions first differ at step {found['first_prediction_change_step']} "
                    f"({found['predictions_changed'][-1]:.2%} of test examples differ at the end).")
    else:
        said.append(f"No test prediction differs in {steps[-1]} steps.")
        if found["reference_distance"] is not None:
            more = found["steps_to_reference"]
            reach = (f"at this rate B would reach it in about {more} more steps" if more is not None else
                     "at this rate B does not approach it")
            said.append(f"Two runs that differ by a seed are {found['reference_distance']:.2e} apart at the end, "
                        f"and predict differently; {reach}.")
    return " ".join(said)


def _layer(variable: str) -> str:
    """`dense1/kernel:0` -> `dense1`; a Keras path `sequential/dense/kernel` -> `sequential/dense`."""
    return variable.split(":")[0].rsplit("/", 1)[0]


def format_divergence(found: dict[str, Any], description: str) -> str:
    lines = [description]
    if not found["diverged"]:
        what = ("loss, every gradient, every updated variable" if found.get("unit", "step") == "step"
                and found.get("has_gradients", True) else "loss and every variable")
        if found.get("layers_traced"):
            what += ", every layer's inputs, output and output gradient"
        lines.append(f"No divergence: all {found['steps_compared']} {found.get('unit', 'step')}s ({what}) and the "
                     "initial weights are bitwise identical: the runs never part.")
        return "\n".join(lines)
    if found["stage"] == "run length":
        lengths = found["steps"]
        shorter = "A" if lengths["a"] < lengths["b"] else "B"
        lines.append(f"The runs agree in all {found['steps_compared']} steps both have, then run {shorter} ended: "
                     f"A ran {lengths['a']} steps and B {lengths['b']} (another --epochs, --batch_size or data "
                     "size, or a run cut short).")
        return "\n".join(lines)
    unit = found.get("unit", "step")
    where = f"before the first {unit}" if found["stage"] == "initial weights" else f"at {unit} {found['first_step']}"
    differing = found["differing"]
    rows = [["loss", "-" if differing["loss"] is None else ("DIFFERS" if differing["loss"] else "same")]]
    rows += [[f"gradient {n}", "DIFFERS"] for n in differing["gradients"]]
    updated = "initial" if found["stage"] == "initial weights" else "updated"
    rows += [[f"{updated} {n}", "DIFFERS"] for n in differing["updated"]]
    if found["stage"] == "layer outputs":
        lines.append(f"First divergence {where} of {found['steps_compared']}, in a layer's output only: the loss, "
                     "every gradient and every updated variable are the same.")
    else:
        lines.append(f"First divergence {where} of {found['steps_compared']}, in the {found['stage']}: "
                     f"{', '.join(found['variables'])} (layer {found['layer']}).")
    if found.get("first_layer"):
        lines.append(format_first_layer(found["first_layer"]))
    if found["stage"] != "layer outputs":
        lines.append(format_table(["what", "A vs B"], rows))
    return "\n".join(lines)


def format_first_layer(part: dict[str, Any]) -> str:
    """`first_layer`'s verdict in sentences: the layer where the runs part, and the layers that agree."""
    def named(paths: list[str]) -> str:
        return ", ".join(f"`{p}`" for p in paths)

    before = (f" The layers before it agree: {named(part['agreeing'])}." if part["agreeing"] else
              " It is the first layer called.")
    at = f"at step {part['step']}"
    kind = part["phase"]
    if kind is None:
        return "Every layer's inputs, output and output gradient agree in every step."
    if kind == "layer calls":
        return (f"The runs call different layers: A calls `{part['path']}` where B calls `{part['b_path']}`"
                + (f", after {named(part['agreeing'])}." if part["agreeing"] else ", first."))
    if kind == "forward" and part["inputs_equal"]:
        return (f"The runs part in layer `{part['path']}` ({part['class']}) {at} (forward pass): its inputs are "
                f"equal, its output differs.{before}")
    if kind == "forward":
        return (f"The runs part outside any layer {at} (forward pass): the first layer whose output differs, "
                f"`{part['path']}` ({part['class']}), has inputs that differ too (the model's own code between "
                f"layers, or the batch itself).{before}")
    if kind == "loss":
        return f"Every layer's output agrees {at}: the runs part in the loss, computed from equal outputs."
    if kind == "loss gradient":
        return (f"Every layer's output agrees {at}, and the gradient into the model's output "
                f"(`{part['gradient_into']}`) differs: the runs part in the loss's gradient.")
    if kind == "backward":
        return (f"The runs part in layer `{part['path']}` ({part['class']}) {at} (backward pass): every layer's "
                f"output agrees, the gradient into its output is equal, and the gradient it passes back into "
                f"`{part['gradient_into']}`'s output differs.")
    if kind == "weights":
        return (f"Every layer's inputs, output and output gradient agree {at}: the runs part in a weight's "
                "gradient or its update (below), not in what any layer passes on.")
    return f"Every layer's output and output gradient agree {at}; a layer's inputs differ."
