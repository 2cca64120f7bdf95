"""One trial: build data and model from seeds, train with a hand-written loop, evaluate.

The train step is a `tf.function` with `tf.GradientTape`; an outer
`tf.function` runs `steps_per_loop` steps per call so Python overhead does not
dominate small models. The built-in models update with Adam through
`ResourceApplyAdam`; a user's Keras model (`keras_model.py`) runs through the
same step with the optimizer and loss of its own `compile()`. No `model.fit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from harness.errors import UsageError, first_line
from harness.platform import determinism, known_ops
from harness.schema import CORRECT_ARRAY, PREDICTED_CLASSES_ARRAY
from harness.trial import features, keras_model, layer_trace, op_trace, user_code
from harness.trial.config import TrialConfig, user_model_config
from harness.trial.datasets import (
    Dataset,
    Split,
    check_augment,
    dataset_of,
    example_weights,
    order_fingerprints,
    split_batches,
    split_indices,
    split_pool,
    steps_per_epoch,
)
from harness.trial.fingerprints import array_sha256, variable_name, weights_sha256
from harness.trial.models import build_model, count_weights, flip_lowest_bit
from harness.trial.seeds import SeedSet
from harness.trial.trainable import Task, Trainable, builtin_task

EVAL_BATCH = 1024


class _DropRetracingWarnings(logging.Filter):
    """Every trial builds a new model and traces its functions once, on purpose.

    TF's retracing detector sees the same code traced again and again across
    trials and warns about it; for a study that warning is noise, not advice.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_DropRetracingWarnings())


class TrialFailed(Exception):
    """The trial ran but cannot produce a result (status code and message go in its record)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class TrialResult:
    """What a trial produced; `status["code"] == "ok"` when metrics and fingerprints are filled."""

    status: dict[str, Any]
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    fingerprints: dict[str, Any] = dataclasses.field(default_factory=dict)
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)
    # What the record says of the model (parameters, architecture, optimizer, loss): `Trainable.description`.
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Per-step fingerprints when run with trace=True (not part of the record).
    trace: dict[str, Any] | None = None
    # One value per test example (predicted class, right or not), by array name: written beside the record
    # (studies/per_example.py), which names the file.
    per_example: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Adam:
    """Adam through TF's fused `ResourceApplyAdam` kernel, with Keras's defaults (the built-in models' optimizer).

    The slots are created eagerly here so the train step only reads and
    updates variables, as `tf.function` requires.
    """

    def __init__(self, variables: list[tf.Variable], learning_rate: float,
                 beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-7) -> None:
        self.variables = variables
        self.slots = [(tf.Variable(tf.zeros_like(v), trainable=False),
                       tf.Variable(tf.zeros_like(v), trainable=False)) for v in variables]
        self.learning_rate, self.beta1, self.beta2, self.epsilon = learning_rate, beta1, beta2, epsilon

    def apply(self, gradients: list[tf.Tensor], step: tf.Tensor) -> None:
        t = tf.cast(step + 1, tf.float32)
        beta1_power, beta2_power = tf.pow(self.beta1, t), tf.pow(self.beta2, t)
        for variable, gradient, (m, v) in zip(self.variables, gradients, self.slots, strict=True):
            # Embedding gradients arrive as IndexedSlices; densifying them is the
            # unsorted segment sum that is nondeterministic on GPUs without op determinism.
            gradient = tf.convert_to_tensor(gradient)
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=m.handle, v=v.handle, beta1_power=beta1_power,
                beta2_power=beta2_power, lr=self.learning_rate, beta1=self.beta1,
                beta2=self.beta2, epsilon=self.epsilon, grad=gradient)


def builtin_trainable(model: tf.Module, config: TrialConfig, num_classes: int, dropout_seed: int) -> Trainable:
    """A built-in model with the harness's Adam; dropout masks keyed by (dropout seed, step)."""
    optimizer = Adam(list(model.trainable_variables), config.learning_rate)
    seed = tf.constant(dropout_seed, tf.int64)
    task = builtin_task(num_classes)
    return Trainable(
        variables=optimizer.variables,
        # Dropout masks are keyed by (dropout seed, step): no RNG state to carry.
        forward=lambda x, step, row_order=None: model(x, dropout_key=tf.stack([seed, step]), row_order=row_order),
        update=optimizer.apply,
        predict=lambda x: model(x),
        task=task,
        layers=tuple(getattr(model, "LAYERS", ())),
        description=builtin_description(model, config, task),
        reduction_order=config.batch_order_seed,
        optimizer_slots=[slot for pair in optimizer.slots for slot in pair],
    )


def builtin_description(model: tf.Module, config: TrialConfig, task: Task) -> dict[str, Any]:
    """What a record says of a built-in model: the same fields as for a user's Keras model."""
    parameters = count_weights(model)
    return {"parameters": parameters,
            "architecture": [{"layer": config.model, "class": type(model).__name__, "parameters": parameters}],
            "optimizer": {"class": "ResourceApplyAdam", "learning_rate": config.learning_rate},
            "loss": task.loss_name, "task": task.kind}


def prepare(config: TrialConfig) -> Dataset:
    """What every path does before it builds a trial's model (run_trial, a replica group): this config's
    thread pools and op determinism, its data, and the --augment check. Returns the data."""
    determinism.set_thread_pools(config.intra_op_threads, config.inter_op_threads)
    determinism.set_op_determinism(config.determinism)
    dataset = dataset_of(config)
    check_augment(config, dataset)
    return dataset


def check_data(config: TrialConfig, seeds: SeedSet) -> None:
    """The checks of a trial's data every training path makes before it trains (the data loads, --augment
    suits it, its weights are one kind, the held-out share leaves a training pool, a batch fits in that pool),
    made without building or training anything: a study makes them before it writes a file (api.run_study)."""
    dataset = dataset_of(config)
    check_augment(config, dataset)
    example_weights(config, dataset)
    kept, _ = split_indices(len(dataset.train_y), seeds, config.validation_fraction, config.max_train_examples)
    steps_per_epoch(len(kept), config.batch_size)


def outputs_after_build(config: TrialConfig, parameters: int, variables: list) -> dict[str, Any]:
    """A trial's outputs once its model is built: its size and, for the `bit` condition, which weight's lowest
    bit this flips (flipping it now, before training)."""
    outputs: dict[str, Any] = {"num_weights": parameters}
    if config.flip_bit >= 0:
        outputs["flipped_variable"] = flip_lowest_bit(variables, config.flip_bit)
    return outputs


def optimizer_sha256(trainable: Trainable) -> str | None:
    """The hash of the optimizer's variables after training (its slots, iteration count, learning rate)."""
    return weights_sha256(trainable.optimizer_state()) if trainable.optimizer_state is not None else None


def build_trainable(config: TrialConfig, dataset: Dataset, seeds: SeedSet) -> Trainable:
    """The trial's model, built-in or the user's Keras model, with its weights drawn from the init seed."""
    if config.is_user_model:
        # Probed once per model (before this build: the probe clears the Keras session), not once per trial.
        facts = model_facts(config)
        draws = keras_model.RandomDraws(facts.draws_unseeded, facts.constant_seed_draws)
        return keras_model.build(config, dataset, seeds, draws)
    return builtin_trainable(build_model(config, dataset, seeds.init), config, dataset.num_classes, seeds.dropout)


def inputs_identity(config: TrialConfig) -> dict[str, Any]:
    """Which model code and which data a trial ran on: the record's `model` and `data` blocks, and what a
    resumed study must still match. A built-in model is identified by the harness version in the record."""
    dataset = dataset_of(config)
    return {
        "model": {"spec": config.model, "args": dict(config.model_args),
                  "source_sha256": user_code.source_sha256(config.model) if config.is_user_model else None},
        "data": {"spec": config.dataset, "sha256": dataset.sha256, "train_examples": int(len(dataset.train_y)),
                 "test_examples": int(len(dataset.test_y)), "example_shape": features.example_shapes(dataset.train_x),
                 "classes": dataset.num_classes,
                 **({"source_batch_size": dataset.source_batch_size} if dataset.source_batch_size else {}),
                 **weights_identity(dataset)},
    }


def weights_identity(dataset: Dataset) -> dict[str, Any]:
    """What a record's data block says of the data's own sample weights (their arrays are in its sha256): which
    sets have them, and that the test set's are not scored with. Nothing for unweighted data."""
    if dataset.train_w is None and dataset.test_w is None:
        return {}
    return {"sample_weights": {"train": dataset.train_w is not None, "test": dataset.test_w is not None,
                               **({"test_use": TEST_WEIGHTS_UNUSED} if dataset.test_w is not None else {})}}


# Why a data set's test weights change no score: the record says so beside them (weights_identity).
TEST_WEIGHTS_UNUSED = ("held in the data's identity, not scored with: every test example counts once, so runs are "
                       "compared example by example")


def task_of(config: TrialConfig) -> str:
    """What the config's model predicts: "multiclass", "binary" or "regression" (its records' `model.task`),
    known before any training, so a program can refuse a metric the model has not. A user's model is built
    once per model, arguments, data and loss (not per training setting) to read it from its loss and outputs."""
    if not config.is_user_model:
        return "regression" if config.model == "regression" else "multiclass"
    return model_facts(config).task


def trainer_of(config: TrialConfig) -> tuple[str, str | None]:
    """The loop that trains the config's model, and why where the config did not choose it: "keras_fit" for
    --trainer=keras_fit, and for a model whose class has its own train step (a custom train_step or
    compute_loss: the harness's step would train another procedure); else "harness"."""
    if config.trainer == "keras_fit" or not config.is_user_model:
        return config.trainer, None
    custom = model_facts(config).custom_steps
    if custom:
        return "keras_fit", own_steps_reason(custom)
    return config.trainer, None


def own_steps_reason(custom_steps: Sequence[str]) -> str:
    """Why the model's own Keras fit trains it: `its own train_step` (records' model.trainer_reason)."""
    return f"its own {' and '.join(custom_steps)}"


# What decides a user model's facts (its task, its class's own steps), so configs that differ in training
# settings share one build.
_FACT_FIELDS = ("model", "model_args", "dataset", "data_dir", "label_column", "loss")


def _facts_key(config: TrialConfig) -> TrialConfig:
    return user_model_config(**{name: getattr(config, name) for name in _FACT_FIELDS})


def random_layer_sources_of(config: TrialConfig) -> list[str]:
    """The seeds a user model's own random layers follow ("augment" for augmentation layers, "dropout" for
    the rest); [] for the built-in models, whose dropout the config's dropout_rate decides."""
    return list(model_facts(config).random_sources) if config.is_user_model else []


def draws_unseeded_of(config: TrialConfig) -> bool:
    """Whether a user model draws keras.random numbers with no seed: from Keras's one global generator, which the
    replicas of a group would share."""
    return config.is_user_model and model_facts(config).draws_unseeded


def trainable_weights_of(config: TrialConfig) -> int:
    """How many weights training updates (what sizes a replica group): a user's model from its one probe build."""
    if config.is_user_model:
        return model_facts(config).trainable_weights
    return build_trainable(config, dataset_of(config), SeedSet.from_base(0)).description["parameters"]


class ModelFacts(NamedTuple):
    """What planners ask of a user's model before any trial."""

    task: str  # "multiclass", "binary" or "regression"
    custom_steps: tuple[str, ...]  # the keras.Model train-step methods its class defines itself
    trainable_weights: int
    random_sources: tuple[str, ...]  # the seeds its random layers follow ("augment", "dropout")
    draws_unseeded: bool  # its call draws keras.random numbers with no seed (Keras's one global generator)
    # (layer path, seed) where its call draws keras.random numbers with an int seed: the same in every run
    constant_seed_draws: tuple[tuple[str, int], ...]


# Facts of models probed in a process of their own (studies/study_runner.py's probe_apart: a model that crashes its
# process there is a sentence, not the end of the study), by facts key: this process does not build them again.
_PROBED_ELSEWHERE: dict[TrialConfig, ModelFacts] = {}


def model_facts(config: TrialConfig) -> ModelFacts:
    """A user's model's facts: as probed in another process (`remember_model_facts`), else from one build here."""
    key = _facts_key(config)
    return _PROBED_ELSEWHERE.get(key) or _user_model_facts(key)


def remember_model_facts(config: TrialConfig, facts: dict[str, Any]) -> None:
    """Keeps a model's facts as another process probed them (`ModelFacts` as a JSON object)."""
    _PROBED_ELSEWHERE[_facts_key(config)] = ModelFacts(
        facts["task"], tuple(facts["custom_steps"]), int(facts["trainable_weights"]), tuple(facts["random_sources"]),
        bool(facts["draws_unseeded"]), tuple((str(path), int(seed)) for path, seed in facts["constant_seed_draws"]))


@functools.lru_cache(maxsize=16)
def _user_model_facts(config: TrialConfig) -> ModelFacts:
    """A user's model's facts: one build per model, arguments and data, asked by every planner (metric checks,
    grouping, the trainer, the default conditions) without building again."""
    import keras

    dataset = dataset_of(config)
    keras.backend.clear_session()
    # The probes call the model again (in training mode too): part of building it, for its code.
    with user_code.guarded(config.model, user_code.DOING["model"]):
        model = keras_model.build_model(config, dataset, init_seed=0)
        trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
        draws = keras_model.random_draws(model, dataset)
        task = keras_model.task_for(config, model, dataset)
    return ModelFacts(task.kind, tuple(keras_model.custom_steps(model)), trainable,
                      tuple(keras_model.random_sources(model, draws.unseeded)), draws.unseeded, draws.constant_seeds)


def train_step(trainable: Trainable, x: tf.Tensor, y: tf.Tensor, step: tf.Tensor,
               scale_loss=None, reduce_gradients=None, weights: tf.Tensor | None = None,
               layer_calls: layer_trace.LayerCalls | None = None) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """The one train step, for every path and every model (built-in, the user's, K vectorized replicas).

    Forward in training mode (keyed by the step), the task's loss, gradients by
    `tf.GradientTape`, the optimizer's update. Returns the loss and the gradients.
    A loss with a shape (the vectorized replicas' one per replica) is summed into
    the objective: replicas share no weights, so each gets its own gradient.
    The distributed path scales the loss to its share of the global batch
    (`scale_loss`) and all-reduces the gradients before the update (`reduce_gradients`).
    With a reduction order (the `order` condition), the batch is permuted first, each
    example with its own dropout mask, so every sum over it adds its terms in another order.
    `weights`: each example's weight in the loss (sample or class weights), weighted as Keras weights it.
    `layer_calls` (a traced step's): the forward pass's layer calls are recorded into it, and the backward
    pass takes the gradient into each recorded output too.
    """
    forward_args = ()
    if trainable.reduction_order is not None:
        row_order = batch_order(tf.shape(y)[0], trainable.reduction_order, step)
        x, y = features.gather(x, row_order), tf.gather(y, row_order)
        weights = None if weights is None else tf.gather(weights, row_order)
        forward_args = (row_order,)
    with tf.GradientTape() as tape:
        if layer_calls is not None:
            layer_calls.tape = tape
        loss_value = trainable.task.loss(y, trainable.forward(x, step, *forward_args), weights)
        added = trainable.layer_losses() if trainable.layer_losses is not None else []
        if added:
            loss_value = loss_value + tf.add_n(added)
        if scale_loss is not None:
            loss_value = scale_loss(loss_value)
        objective = loss_value if loss_value.shape.rank == 0 else tf.reduce_sum(loss_value)
    if layer_calls is None:
        gradients = tape.gradient(objective, trainable.variables)
    else:
        gradients = layer_calls.gradients(tape, objective, trainable.variables)
    if reduce_gradients is not None:
        gradients = reduce_gradients(gradients)
    trainable.update(gradients, step)
    return loss_value, gradients


def step_on(trainable: Trainable, batch: tuple, step: tf.Tensor, **options: Any) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """`train_step` on one element of a trial's pipeline: (x, y), or (x, y, w) where examples are weighted."""
    x, y, *weights = batch
    return train_step(trainable, x, y, step, weights=weights[0] if weights else None, **options)


def batch_order(size: tf.Tensor, seed: int, step: tf.Tensor) -> tf.Tensor:
    """A permutation of the batch's `size` examples, a stateless function of (seed, step)."""
    key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), step)
    return tf.argsort(tf.random.stateless_uniform([size], seed=key))


def make_train_loop(trainable: Trainable, xla: bool, trace: bool = False, ops: bool = False):
    """The outer loop (`outer_loop`) over `train_step`, traced as one `tf.function`; it returns the steps' losses.

    With `trace`, it also returns per step the fingerprints (`fingerprint_rows`) of the loss, of
    every gradient and of every variable after its update, and, per layer call, of its inputs, its output
    and the gradient into that output (`layer_trace`): what `harness.diverge` compares. The calls' layer
    paths and classes are the loop's `layer_calls` once it has run. With `ops` too, per step the fingerprints
    of every tensor of every op of the step (`op_trace`); the ops are the loop's `op_calls` once it has run.
    """

    @tf.function(jit_compile=xla)
    def traced_step(x: tf.Tensor, y: tf.Tensor, step: tf.Tensor, weights: tf.Tensor | None = None):
        if not trace:
            loss_value, _ = train_step(trainable, x, y, step, weights=weights)
            return loss_value
        calls, op_calls = layer_trace.LayerCalls(), op_trace.OpCalls()
        with layer_trace.recording(calls, trainable.keras_model):
            loss_value, gradients = train_step(trainable, x, y, step, weights=weights, layer_calls=calls)
        with tf.control_dependencies([loss_value]):
            updated = [_read(v) for v in trainable.variables]
        if ops:  # the step's ops so far: not the fingerprints the trace adds next
            op_calls.read(tf.compat.v1.get_default_graph())
        train_loop.layer_calls, train_loop.op_calls = calls, op_calls
        traced = (loss_value, fingerprint_rows([loss_value, *map(tf.convert_to_tensor, gradients), *updated]),
                  calls.fingerprints())
        return (*traced, op_calls.fingerprints()) if ops else traced

    outputs = (tf.float32, tf.uint8, tf.uint8, tf.uint8)[:(4 if ops else 3) if trace else 1]
    train_loop = outer_loop(lambda batch, step: traced_step(batch[0], batch[1], step, *batch[2:]), outputs)
    train_loop.train_step = traced_step  # for the op scan
    return train_loop


def graph_op_types(graph: tf.Graph) -> Counter:
    """Op types (with counts) of a traced graph and of every function it calls, as traced (before Grappler)."""
    ops: Counter = Counter()
    graphs = [graph]
    while graphs:
        current = graphs.pop()
        ops.update(op.type for op in current.get_operations())
        graphs += [f.graph for f in getattr(current, "_functions", {}).values() if hasattr(f, "graph")]
    return ops


def _read(variable) -> tf.Tensor:
    """A variable's value, read now (a Keras variable wraps the TF one)."""
    return variable.read_value() if hasattr(variable, "read_value") else tf.identity(variable.value)


def fingerprint_rows(tensors: list[tf.Tensor]) -> tf.Tensor:
    """[len(tensors), 8] farmhash64 fingerprints of each tensor's bytes, computed in-graph."""
    return tf.stack([tf.fingerprint(tf.reshape(t, [1, -1]))[0] for t in tensors])


def make_distributed_train_loop(strategy: tf.distribute.Strategy, trainable: Trainable):
    """The train loop under a tf.distribute strategy: each replica takes a slice of every batch.

    Each replica's loss is its share of the global batch's mean, so the all-reduced
    (summed) gradient is the gradient of that mean, and every replica applies
    the same update to its copy of the variables.
    """

    def replica_step(batch: tuple, step: tf.Tensor, global_count: tf.Tensor) -> tf.Tensor:
        local_count = tf.cast(tf.shape(batch[1])[0], tf.float32)
        # A replica can get no examples of a short last batch: its share is 0, not NaN.
        share, _ = step_on(
            trainable, batch, step,
            scale_loss=lambda local_mean: tf.math.multiply_no_nan(local_mean, local_count / global_count),
            reduce_gradients=lambda gradients: tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, [tf.convert_to_tensor(g) for g in gradients]))
        return share

    def step(batch, step_number: tf.Tensor) -> tf.Tensor:
        counts = strategy.run(lambda labels: tf.cast(tf.shape(labels)[0], tf.float32), args=(batch[1],))
        global_count = strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)
        shares = strategy.run(replica_step, args=(batch, step_number, global_count))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, shares, axis=None)

    return outer_loop(step)


def outer_loop(step, dtypes: tuple = (tf.float32,)):
    """The outer `tf.function`: `num_steps` calls of `step(element, step number)` on an iterator's elements.

    One Python call runs many train steps, so Python overhead does not dominate
    small models. Each step's outputs (one tensor, or one per dtype) are stacked
    over the steps: the per-step losses, and per-step fingerprints when tracing.
    """

    @tf.function
    def train_loop(iterator, num_steps: tf.Tensor, first_step: tf.Tensor):
        arrays = tuple(tf.TensorArray(dtype, size=tf.cast(num_steps, tf.int32)) for dtype in dtypes)
        for i in tf.range(num_steps):
            outputs = step(next(iterator), first_step + i)
            outputs = outputs if isinstance(outputs, tuple) else (outputs,)
            arrays = tuple(array.write(tf.cast(i, tf.int32), output)
                           for array, output in zip(arrays, outputs, strict=True))
        stacked = tuple(array.stack() for array in arrays)
        return stacked if len(stacked) > 1 else stacked[0]

    return train_loop


def run_loop(train_loop, iterator, total_steps: int, steps_per_loop: int, first_step: int = 0):
    """Calls the outer loop until step `total_steps` ran, from step `first_step` (a resumed run's).

    Yields, per call: its first step, its step count, its outputs as NumPy, and
    its seconds (the conversion to NumPy included: it waits for the work).
    """
    done = first_step
    while done < total_steps:
        n = min(steps_per_loop, total_steps - done)
        began = time.perf_counter()
        outputs = train_loop(iterator, tf.constant(n, tf.int64), tf.constant(done, tf.int64))
        outputs = tf.nest.map_structure(lambda tensor: tensor.numpy(), outputs)
        yield done, n, outputs, time.perf_counter() - began
        done += n


def run_group_loop(train_loop, iterator, config: TrialConfig, total_steps: int, replicas: int, start: float,
                   setup_s: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Runs a replica group's loop (vectorized.py, grouped.py) to its last step: the per-step losses
    [steps, replicas] and the group's timing (its step times and examples/s are the whole group's)."""
    chunks, call_seconds, call_steps = [], [], []
    for _, n, chunk, seconds in run_loop(train_loop, iterator, total_steps, config.steps_per_loop):
        chunks.append(chunk)
        call_seconds.append(seconds)
        call_steps.append(n)
    train_s = time.perf_counter() - start - setup_s
    timing = timing_from_calls(config, call_seconds, call_steps, setup_s, train_s, start,
                               examples_per_step=replicas * config.batch_size)
    timing["vectorized"] = True
    return np.concatenate(chunks), timing


def nan_loss_message(losses: np.ndarray, first_step: int = 0) -> str | None:
    """What went wrong if the losses of steps first_step... hold a non-finite value (the first one), else None."""
    bad = np.flatnonzero(~np.isfinite(losses))
    return f"the training loss became {losses[bad[0]]} at step {first_step + bad[0]}." if bad.size else None


def nan_loss_failure(losses: np.ndarray, wall_s: float, model: dict[str, Any] | None = None) -> TrialResult | None:
    """A replica's failed result if its loss trace has a non-finite value, else None: a group trains on to
    the end, so this is decided after the loop, where run_trial stops at the first."""
    message = nan_loss_message(losses)
    return TrialResult({"code": "nan_loss", "message": message}, timing={"wall_s": wall_s},
                       model=model or {}) if message else None


def distribution_strategy(name: str) -> tf.distribute.Strategy | None:
    return tf.distribute.MirroredStrategy() if name == "mirrored" else None


def user_code_fails_the_trial(config: TrialConfig) -> contextlib.AbstractContextManager:
    """Where a user's model trains (its own train_step, its layers and loss traced into the harness's step),
    its code leaving the process (sys.exit, os._exit, its own KeyboardInterrupt) fails the trial with that
    sentence, as a failing op does, and the study goes on (user_code.guarded); a real Ctrl-C still stops it."""
    if not config.is_user_model:
        return contextlib.nullcontext()
    return user_code.guarded(config.model, "while training", lambda message: TrialFailed("error", message))


def run_trial(config: TrialConfig, seeds: SeedSet, trace: bool = False, trace_ops: bool = False) -> TrialResult:
    """Trains and evaluates one model; failures become a status, bad input raises UsageError.

    With `trace`, the result's `trace` holds per-step fingerprints for `harness.diverge`. With `trace_ops`
    too, it also holds, per step, the fingerprints of every op's inputs and outputs (`op_steps`, `op_table`:
    `trial/op_trace.py`).
    """
    start = time.perf_counter()
    dataset = prepare(config)
    split = split_pool(dataset, seeds, config)
    strategy = distribution_strategy(config.strategy)
    # Under a strategy, every variable (weights and optimizer slots) is created in its scope.
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    # A trial that fails after the build still says what was built (its task says which metric it had).
    model: dict[str, Any] = {}
    try:
        with scope, user_code_fails_the_trial(config):
            trainable = build_trainable(config, dataset, seeds)
            model = trainable.description
            outputs = outputs_after_build(config, trainable.description["parameters"], trainable.variables)
            if strategy:
                outputs["strategy"] = config.strategy
                outputs["replicas"] = int(strategy.num_replicas_in_sync)
            if config.trainer == "keras_fit" or trainable.description.get("custom_steps"):
                if trace_ops:
                    raise UsageError("op-level capture covers the harness's own train step, not Keras fit or a "
                                     "model's own train_step")
                return fit_with_keras(config, seeds, split, trainable, outputs, start, trace)
            return _train_and_evaluate(config, seeds, split, trainable, outputs, start, strategy, trace,
                                       trace_ops)
    except TrialFailed as failure:
        return _failed(failure.code, str(failure), start, model=model)
    except tf.errors.UnimplementedError as error:
        # Under op determinism TF raises this for ops with no deterministic kernel.
        op, reason = determinism.explain_op_error(error)
        alternative = known_ops.alternative_for(f"{op} {reason}")
        remedy = f"use {alternative} instead" if alternative else "a deterministic replacement op removes the failure"
        return _failed("nondeterministic_op", f"{op or 'an op'} has no deterministic kernel here: {reason}. "
                       f"The `kernels` condition (op determinism off) still runs it; {remedy}", start, op=op,
                       model=model)
    except tf.errors.ResourceExhaustedError as error:
        return _failed("out_of_memory", first_line(error.message), start, model=model)
    except tf.errors.OpError as error:
        reason = determinism.explain_op_error(error)[1]
        if "XLA" in reason and model.get("update") == "xla":
            reason += "; your optimizer's update was compiled with XLA: --xla_update=off runs it op by op"
        return _failed("error", f"{type(error).__name__}: {reason}", start, model=model)
    except (ValueError, ArithmeticError) as error:
        return _failed("error", f"{type(error).__name__}: {first_line(error)}", start, model=model)


def _train_and_evaluate(config: TrialConfig, seeds: SeedSet, split: Split, trainable: Trainable,
                        outputs: dict[str, Any], start: float,
                        strategy: tf.distribute.Strategy | None = None, trace: bool = False,
                        trace_ops: bool = False) -> TrialResult:
    per_epoch = steps_per_epoch(len(split.train_y), config.batch_size)
    total_steps = per_epoch * config.epochs
    batches = split_batches(split, seeds, config)
    if strategy and trace:
        raise UsageError("per-step tracing does not support --strategy")
    if strategy:
        train_loop = make_distributed_train_loop(strategy, trainable)
        iterator = iter(strategy.experimental_distribute_dataset(batches))
    else:
        train_loop = make_train_loop(trainable, config.xla, trace, ops=trace_ops)
        iterator = iter(batches)
    initial_hash = weights_sha256(trainable.fingerprinted)
    initial = initial_fingerprints(trainable) if trace else None
    setup_s = time.perf_counter() - start

    chunks, call_seconds, call_steps, trace_chunks, layer_chunks, op_chunks = [], [], [], [], [], []
    # With `trace`, the weights and test predictions after every loop call too: how far two runs
    # have drifted apart, and when their predictions part (harness.diverge's growth).
    predict = make_predict(trainable, split) if trace else None
    snapshots = [_snapshot(trainable, predict, split, 0)] if trace else []
    for first, n, chunk, seconds in run_loop(train_loop, iterator, total_steps, config.steps_per_loop):
        if trace:
            chunk, traced, layer_rows, *op_rows = chunk
            trace_chunks.append(traced)
            layer_chunks.append(layer_rows)
            op_chunks += op_rows
            snapshots.append(_snapshot(trainable, predict, split, first + n))
        call_seconds.append(seconds)
        call_steps.append(n)
        message = nan_loss_message(chunk, first)
        if message:
            raise TrialFailed("nan_loss", message)
        chunks.append(chunk)
    losses = np.concatenate(chunks)
    train_s = time.perf_counter() - start - setup_s

    test_out, validation = evaluate(trainable, split)
    timing = timing_from_calls(config, call_seconds, call_steps, setup_s, train_s, start)
    result = trial_result(config, seeds, trainable.task, split.dataset, test_out, validation, losses,
                          weights_sha256(trainable.fingerprinted), outputs, timing, initial_hash,
                          optimizer_sha256(trainable))
    result.model = trainable.description
    if trace:
        result.trace = {**step_trace(trainable, train_loop, initial, trace_chunks, layer_chunks),
                        "snapshot_steps": np.array([s[0] for s in snapshots], np.int64),
                        "snapshot_weights": np.stack([s[1] for s in snapshots]),
                        "snapshot_predictions": np.stack([s[2] for s in snapshots])}
        if op_chunks:
            result.trace.update(op_steps=np.concatenate(op_chunks), op_table=train_loop.op_calls.table())
    return result


def initial_fingerprints(trainable: Trainable) -> np.ndarray:
    """A trace's `initial`: each trained variable's fingerprint now, before the traced steps."""
    return fingerprint_rows([_read(v) for v in trainable.variables]).numpy()


def step_trace(trainable: Trainable, train_loop, initial: np.ndarray, trace_chunks: list, layer_chunks: list
               ) -> dict[str, Any]:
    """The per-step part of a trace (what analysis/divergence.compare reads) from a traced loop's calls:
    each call's rows of (loss, gradients, updated variables) and of its layer calls."""
    steps = np.concatenate(trace_chunks)
    return {"initial": initial, "steps": steps,
            "variables": [variable_name(v) for v in trainable.variables],
            "layers": list(trainable.layers),
            # Per step and layer call: fingerprints of its inputs, output, output gradient.
            "layer_steps": np.concatenate(layer_chunks).reshape(len(steps), -1, len(layer_trace.ROWS), 8),
            "layer_paths": list(train_loop.layer_calls.paths),
            "layer_classes": list(train_loop.layer_calls.classes)}


def make_predict(trainable: Trainable, split: Split):
    """The model's inference pass as one traced function for any batch size of the split's examples."""
    # A closure per trial, not the bound method: TF counts retraces per Python
    # function, and a study builds many models of one class.
    return tf.function(lambda x: trainable.predict(x), input_signature=[features.signature(split.train_x)])


def _snapshot(trainable: Trainable, predict, split: Split, step: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(step, every weight flattened into one float32 vector, the test set's predicted classes or outputs)."""
    weights = np.concatenate([np.asarray(_read(v)).ravel() for v in trainable.variables]).astype(np.float32)
    outputs = predict_in_batches(predict, split.dataset.test_x)
    task = trainable.task
    predicted = task.predicted_classes(outputs).astype(np.int64) if task.num_classes else outputs.ravel()
    return step, weights, predicted


def evaluate(trainable: Trainable, split: Split) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The trained model's test outputs, and (outputs, labels) of the validation share if there is one."""
    predict = make_predict(trainable, split)
    test_out = predict_in_batches(predict, split.dataset.test_x)
    validation = None
    if len(split.validation_y):
        validation = (predict_in_batches(predict, split.validation_x), split.validation_y)
    return test_out, validation


def fit_with_keras(config: TrialConfig, seeds: SeedSet, split: Split, trainable: Trainable,
                   outputs: dict[str, Any], start: float, trace: bool = False) -> TrialResult:
    """The keras_fit trainer: the user's own `model.fit` (their compile(): optimizer, loss, metrics, XLA
    setting) runs the steps; the harness keeps every seed's meaning. The model was built under the init
    seed and its SeedGenerators set from the dropout seed (keras_model.build); the batches are the
    harness's pipeline (split, shuffle and augment seeds), handed to fit in order (shuffle=False, one
    continuing iterator over every epoch); evaluation and fingerprints are the harness's."""
    import keras

    custom = trainable.description.get("custom_steps")
    why = (f"{config.model} has {own_steps_reason(custom)}, which only its own Keras fit runs" if custom
           and config.trainer != "keras_fit" else "--trainer=keras_fit trains with the model's own Keras fit")
    if trace:
        raise UsageError(f"per-step tracing runs in the harness loop; {why}: put harness.keras.FingerprintCallback "
                         "in your own fit instead")
    if config.xla:
        raise UsageError(f"--xla compiles the harness's step; {why}, compiled as its compile(jit_compile=...) says")
    if config.batch_order_seed is not None:
        raise UsageError(f"the `order` condition permutes each batch inside the harness's step; {why}: leave "
                         "`order` out for this model")
    model = trainable.keras_model
    keras_model.compile_for_fit(config, model)
    per_epoch = steps_per_epoch(len(split.train_y), config.batch_size)
    batches = split_batches(split, seeds, config)
    initial_hash = weights_sha256(trainable.fingerprinted)
    setup_s = time.perf_counter() - start
    running_means: list[float] = []
    epoch_seconds: list[float] = []

    class Recorder(keras.callbacks.Callback):
        """Keras reports each epoch's running mean of the loss after every batch; a NaN stops the fit."""

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.began = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            running_means.append(float((logs or {}).get("loss", np.nan)))
            if not np.isfinite(running_means[-1]):
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            epoch_seconds.append(time.perf_counter() - self.began)

    model.fit(batches, epochs=config.epochs, steps_per_epoch=per_epoch, shuffle=False, verbose=0,
              callbacks=[Recorder()])
    means = np.array(running_means, np.float64)
    bad = np.flatnonzero(~np.isfinite(means))
    if bad.size:
        raise TrialFailed("nan_loss", f"the training loss became {means[bad[0]]} at step {bad[0]}.")
    # Each step's own loss, recovered from the running means: l_k = (k+1) m_k - k m_(k-1) within an epoch.
    within = np.tile(np.arange(per_epoch), config.epochs)[: len(means)]
    previous = np.where(within == 0, 0.0, np.roll(means, 1))
    losses = (within + 1) * means - within * previous
    train_s = time.perf_counter() - start - setup_s
    test_out, validation = evaluate(trainable, split)
    # Each epoch is one "call" of per_epoch steps: the first (tracing) is left out of the steady state.
    timing = timing_from_calls(config, epoch_seconds, [per_epoch] * len(epoch_seconds), setup_s, train_s, start)
    # fit's optimizer: the compile()'s, which compile_for_fit may have replaced.
    result = trial_result(config, seeds, trainable.task, split.dataset, test_out, validation, losses,
                          weights_sha256(trainable.fingerprinted), outputs, timing, initial_hash,
                          weights_sha256(model.optimizer.variables))
    # fit runs its own update (compiled as its jit_compile says), not the harness loop's.
    description = {key: value for key, value in trainable.description.items() if key != "update"}
    result.model = {**description, "trainer": "keras_fit", "jit_compile": bool(getattr(model, "jit_compile", False))}
    if config.trainer != "keras_fit":
        result.model["trainer_reason"] = own_steps_reason(custom)
    return result


def trial_result(config: TrialConfig, seeds: SeedSet, task: Task, dataset: Dataset, test_out: np.ndarray,
                 validation: tuple[np.ndarray, np.ndarray] | None, losses: np.ndarray, weights_hash: str,
                 outputs: dict[str, Any], timing: dict[str, Any], initial_weights_hash: str,
                 optimizer_hash: str | None = None) -> TrialResult:
    """An ok trial's result from its model's outputs, per-step losses and weight hashes (and the optimizer's
    state hash, where the harness keeps a Keras optimizer), with its split's and batch order's hashes."""
    metrics = output_metrics(task, test_out, dataset.test_y, "test")
    if validation is not None:
        metrics.update(output_metrics(task, validation[0], validation[1], "validation", per_class=False))
    epoch_losses = losses.reshape(config.epochs, -1).mean(axis=1)
    metrics["train_loss"] = float(epoch_losses[-1])
    metrics["epoch_train_loss"] = [float(v) for v in epoch_losses]
    per_example = {}
    # One byte per test example: the disagreement between two runs' predictions is read from it.
    if task.num_classes and task.num_classes <= 256:
        per_example[PREDICTED_CLASSES_ARRAY] = task.predicted_classes(test_out).astype(np.uint8)
    # Right or wrong, per test example: how much of the accuracy's spread is real is read from it.
    if task.num_classes:
        per_example[CORRECT_ARRAY] = task.predicted_classes(test_out) == task.target_classes(dataset.test_y)
    fingerprints = {
        "initial_weights_sha256": initial_weights_hash,
        "weights_sha256": weights_hash,
        "predictions_sha256": array_sha256(test_out),
        "loss_trace_sha256": array_sha256(losses.astype(np.float32)),
        **order_fingerprints(len(dataset.train_y), seeds, config),
    }
    if optimizer_hash is not None:
        fingerprints["optimizer_sha256"] = optimizer_hash
    return TrialResult({"code": "ok", "message": None}, metrics, fingerprints, outputs, timing,
                       per_example=per_example)


def predict_in_batches(predict, x: Any, axis: int = 0) -> np.ndarray:
    """`predict` over `x` (one array or several inputs) in batches of EVAL_BATCH, joined along the examples'
    axis of its output."""
    return np.concatenate([predict(features.constant(features.take(x, slice(i, i + EVAL_BATCH)))).numpy()
                           for i in range(0, features.count(x), EVAL_BATCH)], axis=axis)


def output_metrics(task: Task, outputs: np.ndarray, targets: np.ndarray, prefix: str,
                   per_class: bool = True) -> dict[str, Any]:
    """Loss, and for classifiers accuracy (overall and per class), of outputs against targets."""
    metrics: dict[str, Any] = {f"{prefix}_loss": float(task.loss(tf.constant(targets), tf.constant(outputs))),
                               f"{prefix}_accuracy": None, f"{prefix}_examples": int(len(targets))}
    if task.num_classes:
        predicted, actual = task.predicted_classes(outputs), task.target_classes(targets)
        metrics[f"{prefix}_accuracy"] = float(np.mean(predicted == actual))
        if per_class:
            metrics[f"{prefix}_per_class_accuracy"] = [
                float(np.mean(predicted[actual == c] == c)) if np.any(actual == c) else None
                for c in range(task.num_classes)]
    return metrics


def timing_from_calls(config: TrialConfig, call_seconds: list[float], call_steps: list[int], setup_s: float,
                      train_s: float, start: float, examples_per_step: int | None = None) -> dict[str, Any]:
    # The first call traces and compiles the loop; steady state starts after it.
    steady = np.array([s / n for s, n in zip(call_seconds[1:], call_steps[1:], strict=True)])
    step_ms = None
    if steady.size:
        step_ms = {"median": float(np.median(steady) * 1e3), "mean": float(steady.mean() * 1e3),
                   "p10": float(np.percentile(steady, 10) * 1e3),
                   "p90": float(np.percentile(steady, 90) * 1e3), "calls": int(steady.size)}
    return {
        "wall_s": time.perf_counter() - start,
        "setup_s": setup_s,
        "first_call_s": call_seconds[0],
        "train_s": train_s,
        "steps": int(sum(call_steps)),
        "steady_step_ms": step_ms,
        "examples_per_s": (examples_per_step or config.batch_size) / (step_ms["median"] / 1e3) if step_ms else None,
    }


def _failed(code: str, message: str, start: float, op: str | None = None,
            model: dict[str, Any] | None = None) -> TrialResult:
    status = {"code": code, "message": message, **({"op": op} if op else {})}
    return TrialResult(status, timing={"wall_s": time.perf_counter() - start}, model=model or {})

