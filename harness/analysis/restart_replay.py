"""Does a resumed run replay the uninterrupted one, and if not, which state did its checkpoint miss?

The `resume` condition's fresh process (trial/resume.py) traces the steps it trains after restoring the
checkpoint; the trial's own process traced the same steps uninterrupted. `verdict` compares the two traces
(divergence.compare: the first differing step, stage and variable; first_layer: the layer where they part) and
reads the missing state off where they part:
- the weights right after the restore differ: the model's weights;
- the forward pass parts inside a layer that holds a keras.random SeedGenerator (its inputs equal, its output
  not): that layer's generator state (a Dropout layer's mask counter);
- the first layer's input differs: the data pipeline's position (the batch itself);
- loss and gradients equal and the update differs: the optimizer state (its slots or iteration count).
"""

from __future__ import annotations

from typing import Any

from harness.analysis.divergence import compare

OPTIMIZER_STATE = "optimizer state"


def verdict(reference: dict[str, Any], resumed: dict[str, Any], first_step: int, epoch: int,
            generator_paths: list[str]) -> dict[str, Any]:
    """outputs.resume's verdict: whether the resumed steps equal the uninterrupted ones bit for bit, and where
    not, the first (absolute) step, stage and variables where they part and the state the checkpoint missed.
    `generator_paths`: the model's SeedGenerators (`layer path#index`)."""
    found = compare(reference, resumed)
    where = f"Resumed from a checkpoint at step {first_step} (the end of epoch {epoch}) in a fresh process"
    if not found["diverged"]:
        return {"replays": True, "first_step": None, "stage": None, "variables": [], "layer": None, "missed": None,
                "message": f"{where}, the run replays the uninterrupted one bit for bit: all "
                           f"{found['steps_compared']} steps after it are equal (loss, gradients, weights)."}
    step = first_step + int(found["first_step"] or 0)
    missed = _missed(found, generator_paths)
    variables = ", ".join(found["variables"]) or "-"
    return {"replays": False, "first_step": step, "stage": found["stage"], "variables": list(found["variables"]),
            "layer": found["layer"], "missed": missed,
            "message": f"{where}, the run parts from the uninterrupted one at step {step}, in the {found['stage']} "
                       f"({variables}): the checkpoint missed {missed}."}


def _missed(found: dict[str, Any], generator_paths: list[str]) -> str:
    """The state a checkpoint missed, read off where the two runs first part."""
    if found["stage"] == "initial weights":
        return "the model's weights"
    part = found.get("first_layer") or {}
    if part.get("phase") == "forward":
        path, kind = part["path"], part["class"]
        if not part["inputs_equal"] and not part["agreeing"]:
            return "the data pipeline's position (the batch itself differs)"
        if part["inputs_equal"] and any(g.startswith(f"{path}#") for g in generator_paths):
            return f"the random generator state of layer `{path}` ({kind})"
        return f"state that layer `{path}` ({kind}) keeps outside its weights"
    if found["stage"] == "update (optimizer)":
        return f"the {OPTIMIZER_STATE} (its slots or iteration count)"
    return f"state the checkpoint does not hold ({found['stage']})"
