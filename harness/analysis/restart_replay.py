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


def script_verdict(uninterrupted: dict[str, Any], resumed: dict[str, Any], epoch: int) -> dict[str, Any]:
    """The doctor's restart replay of a script's fit (`doctor --resume_at`): whether the run resumed at the end
    of `epoch` in a fresh process ends at the uninterrupted run's weights, and each state it lacks where epoch
    `epoch` + 1 begins, named. Both are keras_probe's fit records (`resume_state`, `steps`, `final_weights`)."""
    how = ("by the script's BackupAndRestore" if uninterrupted["resumed_by"] == "BackupAndRestore" else
           "by the harness's resume of fit (the script has no BackupAndRestore): weights, optimizer state and every "
           "random generator's state restored from its checkpoint")
    where = f"Interrupted at the end of epoch {epoch} and resumed in a fresh process {how}"
    missed = missed_states(uninterrupted, resumed, epoch)
    replays = uninterrupted["final_weights"] == resumed["final_weights"]
    steps = [a == b for a, b in zip(uninterrupted["steps"], resumed["steps"], strict=False)]
    parts_at = steps.index(False) if False in steps else None
    if replays:
        message = f"{where}, the run replays the uninterrupted one: its final weights are equal bit for bit."
    else:
        lacks = ("; where it begins, the resumed run lacks " + ", ".join(missed) if missed else
                 "; every state the doctor observes (weights, optimizer state, random generators, the batches) was "
                 "equal where it begins, so the resume misses state outside them (the model's or a callback's own "
                 "Python attributes, a data pipeline of the script's own)")
        at = (f"the runs part at step {parts_at + 1} of epoch {epoch + 1}" if parts_at is not None else
              f"the runs part after the first {len(steps)} steps of epoch {epoch + 1}")
        message = f"{where}, the run does NOT replay the uninterrupted one: its final weights differ; {at}{lacks}."
    return {"epoch": epoch, "resumed_by": uninterrupted["resumed_by"], "replays": replays, "missed": missed,
            "first_differing_step": None if parts_at is None else parts_at + 1, "message": message}


def missed_states(uninterrupted: dict[str, Any], resumed: dict[str, Any], epoch: int) -> list[str]:
    """Each state whose value differs where epoch `epoch` + 1 begins, named as a user knows it."""
    from harness.trial.resume import GENERATORS, OPTIMIZER, WEIGHTS  # here: it loads TensorFlow, the verdict not

    expected, found = uninterrupted["resume_state"], resumed.get("resume_state") or {}
    missed = []
    for part, variables in expected.items():
        differing = [name.split(":", 1)[-1] for name, value in variables.items()
                     if (found.get(part) or {}).get(name) != value]
        if not differing:
            continue
        if part == WEIGHTS:
            missed.append(f"the model's weights ({', '.join(differing)})")
        elif part == OPTIMIZER:
            iteration = [name for name in differing if name.endswith("/iteration")]
            slots = [name for name in differing if name not in iteration]
            missed += ["the optimizer's iteration count" for _ in iteration[:1]]
            missed += [f"the optimizer's state ({', '.join(slots)})" for _ in slots[:1]]
        elif part == GENERATORS:
            missed += [f"the random generator state of layer `{name.split('#')[0]}` (its SeedGenerator: the "
                       "masks it draws)" if not name.startswith("keras.random") else
                       "Keras's global random generator (what keras.random calls with no seed draw)"
                       for name in differing]
    batches = [step["batch"] for step in uninterrupted["steps"][:1]], [step["batch"] for step in resumed["steps"][:1]]
    if batches[0] != batches[1]:
        missed.append(f"the data order of epoch {epoch + 1} (its first batch holds other examples)")
    return missed
