"""Restart replay: a trial trained to an epoch, checkpointed, and finished by a fresh process restored from it.

The `resume` condition's trial (config.resume_epoch = k; studies/unit_of_work.py runs it):
1. `run`, in the trial's process: the model is built from the trial's seeds and trained to the end of epoch k
   (step s = k x steps per epoch); a checkpoint of the whole training state is written atomically; then the same
   process trains on, uninterrupted, to the last step, traced from step s: the reference.
2. `finish`, in a fresh process (`python -m harness.worker --resume_from=DIR`): the model is built again from
   the trial's seeds, the checkpoint restored into it, and steps s... trained, traced. Its trace is compared with
   the reference's (analysis/restart_replay.py); its result is the trial's record.

What the checkpoint holds (`training_state`): every weight (trainable or not: BatchNorm's statistics), the
optimizer's state (a Keras optimizer's variables: slots, iteration count, learning rate; the built-in Adam's m
and v slots, whose step count is the train step's), every keras.random SeedGenerator's state (the Dropout,
noise and augmentation layers' counters, and Keras's global generator), and the step. The data pipeline is
stateless (datasets.training_batches: each batch a pure function of the seeds, the epoch and its index), so its
position and shuffle state are the step alone: the fresh process skips the first s batches. The built-in models'
dropout masks are keyed by (dropout seed, step): no state either.

A test hook, and nothing else: the environment variable HARNESS_RESUME_OMIT leaves one part out of the checkpoint,
`optimizer` (the optimizer's state) or a SeedGenerator's path (`dropout#0`), so tests plant a checkpoint that misses
a known state and check that the verdict names it.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import replace_atomically
from harness.trial import keras_model
from harness.trial.config import TrialConfig
from harness.trial.datasets import split_batches, split_pool, steps_per_epoch
from harness.trial.fingerprints import variable_name, weights_sha256
from harness.trial.seeds import SeedSet
from harness.trial.train import (
    TrialFailed,
    TrialResult,
    _failed,
    build_trainable,
    evaluate,
    initial_fingerprints,
    make_train_loop,
    nan_loss_message,
    optimizer_sha256,
    outputs_after_build,
    prepare,
    run_loop,
    step_trace,
    timing_from_calls,
    trial_result,
    user_code_fails_the_trial,
)
from harness.trial.trainable import Trainable

CHECKPOINT_FILE, REFERENCE_FILE, RESULT_FILE, RESULT_ARRAYS_FILE = (
    "checkpoint.npz", "reference_trace.npz", "result.json", "result_arrays.npz")
OMIT_VARIABLE = "HARNESS_RESUME_OMIT"  # the test hook (module docstring)
OPTIMIZER, WEIGHTS, GENERATORS = "optimizer state", "weights", "random generator states"


def resume_step(config: TrialConfig, train_examples: int) -> int:
    """The step a resumed trial restarts at: the first of epoch resume_epoch + 1."""
    return config.resume_epoch * steps_per_epoch(train_examples, config.batch_size)


def training_state(trainable: Trainable) -> dict[str, dict[str, Any]]:
    """Every variable that decides the rest of the run, by part: {part: {name: variable}}."""
    model = trainable.keras_model
    if model is None:  # a built-in model
        slots = trainable.optimizer_slots or []
        names = [f"{variable_name(v)}/{kind}" for v in trainable.variables for kind in ("m", "v")]
        return {WEIGHTS: {variable_name(v): v for v in trainable.variables},
                OPTIMIZER: dict(zip(names, slots, strict=True))}
    return keras_training_state(model, trainable.optimizer_state())


def keras_training_state(model: Any, optimizer_variables: list[Any]) -> dict[str, dict[str, Any]]:
    """training_state of a Keras model and its optimizer's variables (the doctor's resume of a script's fit
    checkpoints exactly this too)."""
    generators = {path: generator.state for path, generator in keras_model.seed_generators(model)}
    global_generator = keras_model.global_generator()
    if global_generator is not None:
        generators[keras_model.GLOBAL_GENERATOR_PATH] = global_generator.state
    return {WEIGHTS: {f"{i}:{v.path}": v for i, v in enumerate(model.weights)},
            OPTIMIZER: {f"{i}:{v.path}": v for i, v in enumerate(optimizer_variables)},
            GENERATORS: generators}


def write_checkpoint(path: Path, trainable: Trainable, step: int, losses: np.ndarray) -> list[str]:
    """Writes the training state at `step` (and the losses of the steps before it, for the record) to `path`,
    atomically; returns what the test hook left out ([] without it)."""
    return write_state(path, training_state(trainable), step, losses)


def write_state(path: Path, state: dict[str, dict[str, Any]], step: int, losses: np.ndarray) -> list[str]:
    """write_checkpoint of a training state (`training_state`, `keras_training_state`)."""
    omit = os.environ.get(OMIT_VARIABLE, "")
    arrays: dict[str, np.ndarray] = {"step": np.array(step, np.int64), "losses": losses.astype(np.float32)}
    index: dict[str, list[str]] = {}
    left_out = []
    for part, variables in state.items():
        index[part] = []
        for name, variable in variables.items():
            if omit and (omit == "optimizer" and part == OPTIMIZER or omit == name):
                left_out.append(name)
                continue
            arrays[f"{part}/{len(index[part])}"] = np.asarray(variable.numpy())
            index[part].append(name)
    arrays["index"] = np.array(json.dumps(index))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    replace_atomically(path, buffer.getvalue())
    return left_out


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's arrays; one sentence (a failed trial) if it is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        index = json.loads(str(arrays["index"]))
        int(arrays["step"])
    except FileNotFoundError:
        raise TrialFailed("error", f"the resume checkpoint {path} is missing, so the trial cannot resume") from None
    except Exception as error:  # noqa: BLE001 - a damaged archive fails in many ways (zip, npy header, JSON, a key)
        raise TrialFailed("error", f"the resume checkpoint {path} is damaged ({type(error).__name__}), so the trial "
                          "cannot resume from it") from None
    return {**arrays, "index": index}


def restore(checkpoint: dict[str, Any], trainable: Trainable, path: Path) -> None:
    """Assigns every variable the checkpoint holds; what it does not hold keeps its freshly built value."""
    restore_state(checkpoint, training_state(trainable), path)


def restore_state(checkpoint: dict[str, Any], state: dict[str, dict[str, Any]], path: Path) -> None:
    """restore into a training state (`training_state`, `keras_training_state`)."""
    for part, variables in state.items():
        for i, name in enumerate(checkpoint["index"].get(part, [])):
            if name not in variables or tuple(variables[name].shape) != checkpoint[f"{part}/{i}"].shape:
                raise TrialFailed("error", f"the resume checkpoint {path} holds {name} ({part}), which the rebuilt "
                                  "model has not in that shape, so the trial cannot resume from it")
            variables[name].assign(checkpoint[f"{part}/{i}"])


def _train(trainable: Trainable, config: TrialConfig, iterator, first: int, last: int, trace: bool,
           calls: list[tuple[float, int]]) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Steps first..last-1 on `iterator`: their losses, and their trace with `trace`."""
    loop = make_train_loop(trainable, config.xla, trace)
    initial = initial_fingerprints(trainable) if trace else None
    losses, trace_chunks, layer_chunks = [], [], []
    for begin, n, chunk, seconds in run_loop(loop, iterator, last, config.steps_per_loop, first):
        if trace:
            chunk, traced, layer_rows = chunk
            trace_chunks.append(traced)
            layer_chunks.append(layer_rows)
        message = nan_loss_message(chunk, begin)
        if message:
            raise TrialFailed("nan_loss", message)
        losses.append(chunk)
        calls.append((seconds, n))
    found = step_trace(trainable, loop, initial, trace_chunks, layer_chunks) if trace else None
    return np.concatenate(losses), found


def refuse_own_fit(config: TrialConfig, trainable: Trainable) -> None:
    """The resume condition replays the harness's loop; a model its own Keras fit trains is refused in a sentence."""
    custom = trainable.description.get("custom_steps")
    if config.trainer == "keras_fit" or custom:
        why = f"has its own {' and '.join(custom)}" if custom else "trains with --trainer=keras_fit"
        raise TrialFailed("error", f"the `resume` condition replays the harness's train loop from a checkpoint; "
                          f"{config.model} {why}, which only its own Keras fit runs, and state that fit keeps "
                          "outside the model's and optimizer's variables (Python attributes of the model, TF's "
                          "global random ops) cannot be checkpointed by the harness")


def run(config: TrialConfig, seeds: SeedSet, finish_elsewhere: Callable[[Path], TrialResult], directory: Path
        ) -> TrialResult:
    """Phase 1 (module docstring) in this process, writing the checkpoint and reference trace into `directory`;
    `finish_elsewhere(directory)` runs phase 2 in a fresh process and returns the trial's result."""
    start = time.perf_counter()
    dataset = prepare(config)
    split = split_pool(dataset, seeds, config)
    model: dict[str, Any] = {}
    try:
        with user_code_fails_the_trial(config):
            trainable = build_trainable(config, dataset, seeds)
            model = trainable.description
            refuse_own_fit(config, trainable)
            per_epoch = steps_per_epoch(len(split.train_y), config.batch_size)
            first, last = resume_step(config, len(split.train_y)), per_epoch * config.epochs
            iterator = iter(split_batches(split, seeds, config))
            losses, _ = _train(trainable, config, iterator, 0, first, False, [])
            write_checkpoint(directory / CHECKPOINT_FILE, trainable, first, losses)
            _, reference = _train(trainable, config, iterator, first, last, True, [])
            buffer = io.BytesIO()
            np.savez(buffer, **{key: np.asarray(value) for key, value in reference.items()},
                     weights_sha256=np.array(weights_sha256(trainable.fingerprinted)))
            replace_atomically(directory / REFERENCE_FILE, buffer.getvalue())
    except TrialFailed as failure:
        return _failed(failure.code, str(failure), start, model=model)
    result = finish_elsewhere(directory)
    result.timing["wall_s"] = time.perf_counter() - start
    return result


def finish(config: TrialConfig, seeds: SeedSet, directory: Path) -> TrialResult:
    """Phase 2 (module docstring), in a fresh process: the trial's result, with the resumed steps' trace."""
    start = time.perf_counter()
    dataset = prepare(config)
    split = split_pool(dataset, seeds, config)
    model: dict[str, Any] = {}
    try:
        with user_code_fails_the_trial(config):
            trainable = build_trainable(config, dataset, seeds)
            model = trainable.description
            outputs = outputs_after_build(config, model["parameters"], trainable.variables)
            initial_hash = weights_sha256(trainable.fingerprinted)
            checkpoint = read_checkpoint(directory / CHECKPOINT_FILE)
            restore(checkpoint, trainable, directory / CHECKPOINT_FILE)
            first = int(checkpoint["step"])
            last = steps_per_epoch(len(split.train_y), config.batch_size) * config.epochs
            # The pipeline's position is the step: batches are a pure function of (seeds, epoch, index).
            iterator = iter(split_batches(split, seeds, config).skip(first))
            setup_s = time.perf_counter() - start
            calls: list[tuple[float, int]] = []
            losses, trace = _train(trainable, config, iterator, first, last, True, calls)
            train_s = time.perf_counter() - start - setup_s
            test_out, validation = evaluate(trainable, split)
            timing = timing_from_calls(config, [c[0] for c in calls], [c[1] for c in calls], setup_s, train_s,
                                       start)
            # The run's loss trace is the whole run's: the checkpointed steps' and the resumed ones'.
            whole_run = np.concatenate([checkpoint["losses"], losses])
            result = trial_result(config, seeds, trainable.task, split.dataset, test_out, validation, whole_run,
                                  weights_sha256(trainable.fingerprinted), outputs, timing, initial_hash,
                                  optimizer_sha256(trainable))
            result.model = model
            result.trace = trace
            outputs["resume"] = {"epoch": config.resume_epoch, "step": first,
                                 "checkpoint": {part: len(names) for part, names in checkpoint["index"].items()}}
            return result
    except TrialFailed as failure:
        return _failed(failure.code, str(failure), start, model=model)


def read_reference(directory: Path) -> dict[str, Any]:
    """The uninterrupted run's trace from the checkpoint's step on (written by `run`)."""
    with np.load(directory / REFERENCE_FILE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def write_result(directory: Path, result: TrialResult) -> None:
    """The fresh process's result, for the trial's process to record (`read_result`)."""
    replace_atomically(directory / RESULT_FILE, json.dumps(
        {"status": result.status, "metrics": result.metrics, "fingerprints": result.fingerprints,
         "outputs": result.outputs, "timing": result.timing, "model": result.model,
         "per_example": sorted(result.per_example)}))
    buffer = io.BytesIO()
    np.savez(buffer, **result.per_example)
    replace_atomically(directory / RESULT_ARRAYS_FILE, buffer.getvalue())


def read_result(directory: Path) -> TrialResult:
    document = json.loads((directory / RESULT_FILE).read_text())
    with np.load(directory / RESULT_ARRAYS_FILE, allow_pickle=False) as data:
        per_example = {key: data[key] for key in document.pop("per_example")}
    return TrialResult(**document, per_example=per_example)
