"""What the one train step needs of a model, whoever wrote it: the harness (`models.py`) or a user (Keras).

A `Trainable` is a model with its variables, its forward pass in training mode
(keyed by the step, for stateless dropout), its update rule, and a `Task` that
says what its outputs mean (the loss; for classifiers, how outputs and
targets become classes). `train.py` trains and scores any `Trainable` the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Task:
    """What a model's outputs mean: the training loss, and for classifiers how to read classes."""

    kind: str  # "multiclass", "binary" or "regression"
    num_classes: int  # 0 for regression
    # (targets, outputs, weights or None) -> the batch's mean loss, each example's value times its weight first
    # (Keras's sum_over_batch_size: the weighted sum over the batch's size, not over the weights' sum).
    loss: Callable[[tf.Tensor, tf.Tensor, tf.Tensor | None], tf.Tensor]
    predicted_classes: Callable[[np.ndarray], np.ndarray] | None = None
    target_classes: Callable[[np.ndarray], np.ndarray] | None = None
    # For people and records: the loss's name.
    loss_name: str = ""


def argmax_classes(outputs: np.ndarray) -> np.ndarray:
    return np.argmax(outputs, axis=-1)


def builtin_task(num_classes: int) -> Task:
    """The built-in models' task: softmax cross-entropy on logits, or mean squared error."""
    if num_classes:
        def cross_entropy(labels: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
            return tf.reduce_mean(weighted(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits), weights))
        return Task("multiclass", num_classes, cross_entropy, argmax_classes, np.asarray,
                    "sparse softmax cross-entropy")

    def mean_squared_error(targets: tf.Tensor, outputs: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
        if weights is None:
            return tf.reduce_mean(tf.square(outputs - targets))
        return tf.reduce_mean(weighted(tf.reduce_mean(tf.square(outputs - targets), axis=-1), weights))
    return Task("regression", 0, mean_squared_error, loss_name="mean squared error")


def weighted(values: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
    """Each example's loss value times its weight (unchanged with none)."""
    return values if weights is None else values * tf.cast(weights, values.dtype)


@dataclasses.dataclass
class Trainable:
    """A model ready for the harness's train step."""

    variables: list[Any]  # trained, in the model's order (the weights' fingerprint follows it)
    # (x, step) -> outputs, in training mode; with `reduction_order`, (x, step, row_order): the batch came
    # permuted by row_order, and each example's random masks must follow it.
    forward: Callable[..., tf.Tensor]
    update: Callable[[list[tf.Tensor], tf.Tensor], None]  # (gradients, step): the optimizer's update
    predict: Callable[[tf.Tensor], tf.Tensor]  # x -> outputs, in inference mode
    task: Task
    # Layer names in forward order, for naming where two runs part (backprop visits them reversed).
    layers: tuple[str, ...] = ()
    # What the record says of the model: parameter count, architecture, optimizer...
    description: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The user's Keras model itself (None for built-ins): what the keras_fit trainer calls fit on.
    keras_model: Any = None
    # The seed of the per-step permutation of the batch (config.reduction_order), or None: train_step
    # permutes the examples so every sum over the batch adds its terms in another order.
    reduction_order: int | None = None
    # () -> the loss terms the model's layers added in the last forward pass (a Keras model's `losses`), added
    # to the task's loss in training only; None for models that add none.
    layer_losses: Callable[[], list[tf.Tensor]] | None = None
    # Every variable the model holds, trainable and not (BatchNorm's moving statistics): what the weights'
    # fingerprint covers. None: `variables` are all there is.
    state: list[Any] | None = None
    # () -> the optimizer's variables (iteration count, learning rate, slots), fingerprinted after training;
    # None where the harness keeps no Keras optimizer (the built-in models).
    optimizer_state: Callable[[], list[Any]] | None = None
    # The built-in models' Adam slots (m, v per variable): what a resume checkpoint holds of their optimizer (their
    # step count is the train step's). None for a Keras model, whose optimizer_state holds its slots.
    optimizer_slots: list[Any] | None = None

    @property
    def fingerprinted(self) -> list[Any]:
        """The variables `weights_sha256` covers: the whole model state."""
        return self.state if self.state is not None else self.variables
