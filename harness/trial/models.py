"""Models as `tf.Module`s whose initial weights are a pure function of the init seed.

Every variable is drawn by a stateless op keyed by (init seed, variable
number), so building the same model twice, in any process, gives the same
bits, and no global or op-level seed is involved. Dropout masks come from
stateless ops keyed by a per-step key (dropout seed, step) the caller passes.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from harness.errors import UsageError
from harness.trial.config import TrialConfig
from harness.trial.datasets import Dataset
from harness.trial.fingerprints import variable_name
from harness.trial.layer_trace import layer_output

# Pixel intensities become this many token levels in the embedding model.
EMBEDDING_LEVELS = 8
EMBEDDING_DIM = 32


class _SeededModule(tf.Module):
    """Creates variables from stateless initializers, numbered in creation order."""

    # The model's layers in forward order (variable name prefixes): backprop visits them reversed.
    LAYERS: tuple[str, ...] = ()

    def __init__(self, init_seed: int, name: str) -> None:
        super().__init__(name=name)
        self._init_seed = init_seed
        self._variable_count = 0

    def _glorot(self, shape: tuple[int, ...], name: str) -> tf.Variable:
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        value = tf.random.stateless_uniform(
            shape, seed=[self._init_seed, self._variable_count], minval=-limit, maxval=limit)
        self._variable_count += 1
        return tf.Variable(value, name=name)

    def _uniform(self, shape: tuple[int, ...], name: str, scale: float) -> tf.Variable:
        value = tf.random.stateless_uniform(
            shape, seed=[self._init_seed, self._variable_count], minval=-scale, maxval=scale)
        self._variable_count += 1
        return tf.Variable(value, name=name)

    @staticmethod
    def _zeros(size: int, name: str) -> tf.Variable:
        return tf.Variable(tf.zeros([size]), name=name)


def dropout(x: tf.Tensor, rate: float, key: tf.Tensor, layer: int, row_order: tf.Tensor | None = None) -> tf.Tensor:
    """Inverted dropout with a mask keyed by (dropout seed, step, layer). When the batch came permuted by
    `row_order` (the `order` condition), the mask rows are permuted alike: each example keeps its mask."""
    if rate == 0.0:
        return x
    keep = dropout_keep(tf.shape(x), rate, key, layer)
    if row_order is not None:
        keep = tf.gather(keep, row_order)
    return layer_output("dropout", "Dropout", x, tf.where(keep, x / (1.0 - rate), tf.zeros_like(x)))


def dropout_keep(shape: tf.Tensor, rate: float, key: tf.Tensor, layer: int) -> tf.Tensor:
    """Dropout's keep mask, a stateless function of (dropout seed, step) = `key` and the layer."""
    seed = tf.random.experimental.stateless_fold_in(key, layer)
    return tf.random.stateless_uniform(shape, seed=seed) >= rate


class MLP(_SeededModule):
    """Flatten, Dense(hidden)-relu, Dropout(rate), Dense(outputs): the original question's model."""

    LAYERS = ("dense1", "dense2")

    def __init__(self, input_shape: tuple[int, ...], hidden: int, outputs: int,
                 dropout_rate: float, init_seed: int) -> None:
        super().__init__(init_seed, name="mlp")
        inputs = math.prod(input_shape)
        self.dense1_kernel = self._glorot((inputs, hidden), "dense1/kernel")
        self.dense1_bias = self._zeros(hidden, "dense1/bias")
        self.dense2_kernel = self._glorot((hidden, outputs), "dense2/kernel")
        self.dense2_bias = self._zeros(outputs, "dense2/bias")
        self.dropout_rate = dropout_rate

    def __call__(self, x: tf.Tensor, dropout_key: tf.Tensor | None = None,
                 row_order: tf.Tensor | None = None) -> tf.Tensor:
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        h = layer_output("dense1", "Dense", x, tf.nn.relu(self._first_layer(x) + self.dense1_bias))
        if dropout_key is not None:
            h = dropout(h, self.dropout_rate, dropout_key, layer=0, row_order=row_order)
        return layer_output("dense2", "Dense", h, tf.matmul(h, self.dense2_kernel) + self.dense2_bias)

    def _first_layer(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.dense1_kernel)


class SparseMLP(MLP):
    """The MLP with its first layer as a sparse-dense matmul over the (mostly zero) pixels.

    TF has no deterministic GPU kernel for SparseTensorDenseMatMul: on a GPU
    with op determinism on it raises UnimplementedError, so this model shows
    how a study reports such an op. On CPU it trains like the MLP.
    """

    def _first_layer(self, x: tf.Tensor) -> tf.Tensor:
        return tf.sparse.sparse_dense_matmul(tf.sparse.from_dense(x), self.dense1_kernel)


class CNN(_SeededModule):
    """Conv3x3(32)-relu-maxpool, Conv3x3(64)-relu-maxpool, Dropout, Dense(hidden)-relu, Dense(classes).

    On a GPU the convolutions run through cuDNN, whose algorithm choice and
    backprop kernels are nondeterministic unless op determinism is on.
    """

    LAYERS = ("conv1", "conv2", "dense1", "dense2")

    def __init__(self, input_shape: tuple[int, ...], hidden: int, outputs: int,
                 dropout_rate: float, init_seed: int) -> None:
        super().__init__(init_seed, name="cnn")
        height, width, channels = input_shape
        self.conv1_kernel = self._glorot((3, 3, channels, 32), "conv1/kernel")
        self.conv1_bias = self._zeros(32, "conv1/bias")
        self.conv2_kernel = self._glorot((3, 3, 32, 64), "conv2/kernel")
        self.conv2_bias = self._zeros(64, "conv2/bias")
        flat = math.ceil(height / 4) * math.ceil(width / 4) * 64
        self.dense1_kernel = self._glorot((flat, hidden), "dense1/kernel")
        self.dense1_bias = self._zeros(hidden, "dense1/bias")
        self.dense2_kernel = self._glorot((hidden, outputs), "dense2/kernel")
        self.dense2_bias = self._zeros(outputs, "dense2/bias")
        self.dropout_rate = dropout_rate

    def __call__(self, x: tf.Tensor, dropout_key: tf.Tensor | None = None,
                 row_order: tf.Tensor | None = None) -> tf.Tensor:
        for name, kernel, bias in (("conv1", self.conv1_kernel, self.conv1_bias),
                                   ("conv2", self.conv2_kernel, self.conv2_bias)):
            convolved = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias))
            x = layer_output(name, "Conv2D+MaxPool", x, tf.nn.max_pool2d(convolved, 2, 2, "SAME"))
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        if dropout_key is not None:
            x = dropout(x, self.dropout_rate, dropout_key, layer=0, row_order=row_order)
        h = layer_output("dense1", "Dense", x, tf.nn.relu(tf.matmul(x, self.dense1_kernel) + self.dense1_bias))
        return layer_output("dense2", "Dense", h, tf.matmul(h, self.dense2_kernel) + self.dense2_bias)


class Embedding(_SeededModule):
    """Pixels as tokens (position, quantized intensity), embedding lookup, segment-sum pooling, MLP.

    On a GPU the gather's backprop (an unsorted segment sum into the embedding
    table) and the segment-sum pooling use atomics unless op determinism is on.
    """

    LAYERS = ("table", "dense1", "dense2")

    def __init__(self, input_shape: tuple[int, ...], hidden: int, outputs: int,
                 dropout_rate: float, init_seed: int) -> None:
        super().__init__(init_seed, name="embedding")
        self.positions = math.prod(input_shape)
        self.table = self._uniform((self.positions * EMBEDDING_LEVELS, EMBEDDING_DIM), "table", 0.05)
        self.dense1_kernel = self._glorot((EMBEDDING_DIM, hidden), "dense1/kernel")
        self.dense1_bias = self._zeros(hidden, "dense1/bias")
        self.dense2_kernel = self._glorot((hidden, outputs), "dense2/kernel")
        self.dense2_bias = self._zeros(outputs, "dense2/bias")
        self.dropout_rate = dropout_rate

    def __call__(self, x: tf.Tensor, dropout_key: tf.Tensor | None = None,
                 row_order: tf.Tensor | None = None) -> tf.Tensor:
        batch = tf.shape(x)[0]
        pixels = tf.reshape(x, [batch, self.positions])
        levels = tf.minimum(tf.cast(pixels * EMBEDDING_LEVELS, tf.int32), EMBEDDING_LEVELS - 1)
        tokens = tf.range(self.positions) * EMBEDDING_LEVELS + levels
        vectors = tf.gather(self.table, tf.reshape(tokens, [-1]))
        example = tf.repeat(tf.range(batch), self.positions)
        pooled = layer_output("table", "Embedding+SegmentSum", x,
                              tf.math.unsorted_segment_sum(vectors, example, batch) / self.positions)
        if dropout_key is not None:
            pooled = dropout(pooled, self.dropout_rate, dropout_key, layer=0, row_order=row_order)
        h = tf.nn.relu(tf.matmul(pooled, self.dense1_kernel) + self.dense1_bias)
        h = layer_output("dense1", "Dense", pooled, h)
        return layer_output("dense2", "Dense", h, tf.matmul(h, self.dense2_kernel) + self.dense2_bias)


_MODELS = {"mlp": MLP, "regression": MLP, "cnn": CNN, "embedding": Embedding, "sparse": SparseMLP}


def build_model(config: TrialConfig, dataset: Dataset, init_seed: int) -> tf.Module:
    """The benchmark's model for this data set, its weights drawn from `init_seed`."""
    if dataset.several_inputs:
        raise UsageError(f"the built-in {config.model} model takes one input array and {dataset.name!r} gives "
                         "several; train your own Keras model on it (--model=file.py:function).")
    input_shape = dataset.train_x.shape[1:]
    if config.model in ("cnn", "embedding", "sparse") and not dataset.is_image:
        raise UsageError(f"the {config.model} model needs an image dataset, not {dataset.name!r}.")
    if config.model == "regression" and dataset.is_classification:
        raise UsageError(f"the regression model needs a regression dataset, not {dataset.name!r}.")
    if config.model != "regression" and not dataset.is_classification:
        raise UsageError(f"the {config.model} model needs a classification dataset, not {dataset.name!r}.")
    lowest = min(dataset.train_y.min(), dataset.test_y.min()) if dataset.is_classification else 0
    if lowest < 0:
        # The classes are counted from the largest label up; a negative one failed every trial in its loss.
        raise UsageError(f"the built-in {config.model} model takes class labels 0 to {dataset.num_classes - 1}, "
                         f"and the labels of {dataset.name} include {lowest}.")
    outputs = dataset.num_classes or 1
    return _MODELS[config.model](tuple(input_shape), config.hidden_units, outputs, dropout_rate_of(config), init_seed)


def dropout_rate_of(config: TrialConfig) -> float:
    """The built-in model's dropout rate: the regression model is the MLP with one output, and it has no
    dropout layer in the question."""
    return 0.0 if config.model == "regression" else config.dropout_rate


def flip_lowest_bit(variables: list[tf.Variable], index: int) -> str:
    """Flips the lowest mantissa bit of the `index`-th weight (all variables, in order, flattened).

    Returns the variable's name. This is Summers & Dinneen's instability probe:
    a change of one ulp in one weight, the smallest change a run can have.
    Works on any float32 variables, a user's Keras model's included.
    """
    offset = 0
    for variable in variables:
        size = int(np.prod(variable.shape))
        if index < offset + size:
            values = np.asarray(variable.numpy(), dtype=np.float32).reshape(-1).copy()
            values.view(np.uint32)[index - offset] ^= np.uint32(1)
            variable.assign(values.reshape(variable.shape))
            return variable_name(variable)
        offset += size
    raise UsageError(f"--flip_bit={index} is past the model's {offset} weights.")


def count_weights(model: tf.Module) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)
