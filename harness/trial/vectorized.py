"""Vectorized replicas: K trials of one condition trained together in one graph.

A study needs many trainings of a small model, and one small model leaves
most of a CPU's (or GPU's) arithmetic idle, and its steps pay a fixed cost of
op dispatch. Here the K replicas' weights are stacked on a replica axis, so
one step (one dispatch of the loop) trains all K, and one Adam update covers
all of them. Each replica keeps everything that makes it its own trial, drawn
exactly as the sequential trial draws it:
- initial weights from its init seed (and its flipped bit, for `bit`);
- its training examples (split seed) and their order (shuffle seed), as
  indices gathered in-graph from one copy of the data;
- its augmentation and dropout masks, keyed by its own seeds and the step.

Bits you can rerun alone: every op a replica's numbers pass through is, in
shape and kind, the op its sequential trial runs (a [batch, hidden] matmul,
a bias added and its gradient summed over a [batch, outputs] block, the loss
of its own batch), or one whose result does not depend on the neighbours:
the wide matmul below, and elementwise ops such as Adam's update over the
stacked variables. So a replica's weights, predictions and loss trace are its
sequential trial's bit for bit, in any slot of any group size (tested on CPU).
Not kept: a batched matmul (`einsum` over the replica axis), which sums in
another order than a matmul; and a sum over the batch of a stacked
[K, batch, outputs] tensor, whose result depended on the replica's slot.

Two paths. Where every replica sees the same batches in the same order (equal
split and shuffle seeds, and equal augment seeds when augmenting: the
`control`, `kernels`, `init`, `dropout` and `bit` conditions), the first layer
of all K replicas is **fused**: one wide matmul `x @ [W_1 ... W_K]`, and its
weight gradient one `x^T @ [dH_1 ... dH_K]`, with the first kernel stored as
[inputs, K, hidden] so that the wide view costs no copy; each column of a
matmul's output is summed the same way whatever the other columns. Otherwise
each replica gathers its own batch (**batched**) and each layer is one matmul
per replica, in the same graph. Each trial's record names its path.
Supported for the MLP models (mlp, regression); every other model groups its
replicas in harness/trial/grouped.py.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from harness.platform import environment
from harness.trial.config import TrialConfig
from harness.trial.datasets import (
    augment_images,
    dataset_of,
    epoch_order,
    example_weights,
    shares_batches,
    split_indices,
    steps_per_epoch,
)
from harness.trial.fingerprints import named_arrays_sha256
from harness.trial.models import build_model, count_weights, dropout, dropout_rate_of
from harness.trial.seeds import SeedSet
from harness.trial.train import (
    Adam,
    TrialResult,
    builtin_description,
    nan_loss_failure,
    outer_loop,
    outputs_after_build,
    predict_in_batches,
    prepare,
    run_group_loop,
    train_step,
    trial_result,
)
from harness.trial.trainable import Trainable, builtin_task

SUPPORTED_MODELS = ("mlp", "regression")
# The first layer's kernel: the one the fused path widens to [inputs, K, hidden] (harness/trial/models.py names it).
FIRST_KERNEL = "dense1/kernel"


# --replicas=auto's throughput model. A group's training state is 16 bytes a weight (the weight, Adam's two
# moments, its gradient). Measured here (docs/speed.md, "--replicas=auto"): a group's examples/s grows with K while
# that state fits in about half the CPU's last-level cache, and stops growing or falls past it (the
# 784-128-10 MLP, 1.6 MB a replica, on a 32 MiB L3: best at K=8, no better at 12 to 24; MNIST-1D's MLP,
# 0.1 MB a replica: still growing at 16). Memory is not the limit: a group holds the data once.
MAX_AUTO_REPLICAS = 16
STATE_BYTES_PER_WEIGHT = 16
AUTO_CACHE_SHARE = 0.5
# Where sysfs does not give the cache size: a common server L3.
ASSUMED_CACHE_BYTES = 32 * 1024**2


def supports(config: TrialConfig) -> bool:
    """Whether trials of this config can run as vectorized replicas."""
    return (config.model in SUPPORTED_MODELS and config.strategy == "none" and not config.xla
            and config.reduction_order < 0)


def auto_replicas(config: TrialConfig) -> int:
    """K for --replicas=auto: the most replicas, up to MAX_AUTO_REPLICAS, whose training state fits in
    AUTO_CACHE_SHARE of the last-level cache (on a GPU, not measured here: MAX_AUTO_REPLICAS). 1 where
    replicas are not supported. A pure function of the model and the machine, so a resumed study plans
    the same groups (their size is part of each trial's key); conditions do not change it."""
    if not supports(config):
        return 1
    if tf.config.list_physical_devices("GPU"):
        return MAX_AUTO_REPLICAS
    state = count_weights(build_model(config, dataset_of(config), init_seed=0)) * STATE_BYTES_PER_WEIGHT
    cache = environment.last_level_cache_bytes() or ASSUMED_CACHE_BYTES
    return int(max(1, min(MAX_AUTO_REPLICAS, cache * AUTO_CACHE_SHARE // state)))


def run_replicas(configs: list[TrialConfig], seed_sets: list[SeedSet]) -> list[TrialResult]:
    """Trains len(configs) trials as one vectorized group; one result per trial, in order.

    The configs may differ only in `flip_bit` (the `bit` condition); each must
    have `replicas` equal to the group's size.
    """
    start = time.perf_counter()
    config = configs[0]
    k = len(configs)
    if any(c.replace(flip_bit=-1) != config.replace(flip_bit=-1) for c in configs) or config.replicas != k:
        raise ValueError("a replica group shares one config (apart from flip_bit) with replicas == group size")
    dataset = prepare(config)
    splits = [split_indices(len(dataset.train_y), s, config.validation_fraction, config.max_train_examples)
              for s in seed_sets]
    fused = shares_batches(config, seed_sets)
    names, stacked, outputs, initial_hashes, descriptions = _initial_weights(configs, seed_sets, dataset, fused)
    variables = [tf.Variable(value, name=name.split(":")[0]) for name, value in zip(names, stacked, strict=True)]
    trainable = _stacked_trainable(variables, config, seed_sets, dataset, fused)
    task = builtin_task(dataset.num_classes)
    per_epoch = steps_per_epoch(len(splits[0][0]), config.batch_size)
    total_steps = per_epoch * config.epochs
    train_loop = _make_train_loop(trainable, config, seed_sets, dataset, fused)
    iterator = iter(_index_batches(splits[:1] if fused else splits, seed_sets[:1] if fused else seed_sets, config))
    setup_s = time.perf_counter() - start

    losses, timing = run_group_loop(train_loop, iterator, config, total_steps, k, start, setup_s)  # [steps, K]
    path = "fused" if fused else "batched"

    predict = tf.function(trainable.predict)
    test_out = predict_in_batches(predict, dataset.test_x, axis=1)
    final = [(name, value.numpy()) for name, value in zip(names, variables, strict=True)]  # read once, not per replica
    held_out_outputs: dict[bytes, np.ndarray] = {}  # every replica's outputs per distinct held-out set (fused: one)
    results = []
    for r in range(k):
        failed = nan_loss_failure(losses[:, r], timing["wall_s"])
        if failed:
            results.append(failed)
            continue
        held_out = splits[r][1]
        validation = None
        if len(held_out):
            key = held_out.tobytes()
            if key not in held_out_outputs:
                held_out_outputs[key] = predict_in_batches(predict, dataset.train_x[held_out], axis=1)
            validation = (held_out_outputs[key][r], dataset.train_y[held_out])
        weights = [(name, np.take(value, r, axis=_replica_axis(name, fused))) for name, value in final]
        replica_outputs = {**outputs[r], "vectorized": {"replicas": k, "index": r, "path": path}}
        result = trial_result(configs[r], seed_sets[r], task, dataset, test_out[r], validation, losses[:, r],
                              named_arrays_sha256(weights), replica_outputs, dict(timing), initial_hashes[r])
        result.model = descriptions[r]
        results.append(result)
    return results


def _replica_axis(name: str, fused: bool) -> int:
    """Where a stacked variable keeps its replicas: the fused first kernel is [inputs, K, hidden]."""
    return 1 if fused and name.split(":")[0] == FIRST_KERNEL else 0


def _initial_weights(configs: list[TrialConfig], seed_sets: list[SeedSet], dataset, fused: bool):
    """Each replica's initial weights, built as its sequential trial builds them, stacked on the replica axis."""
    per_replica, outputs, descriptions = [], [], []
    task = builtin_task(dataset.num_classes)
    for config, seeds in zip(configs, seed_sets, strict=True):
        model = build_model(config, dataset, seeds.init)
        descriptions.append(builtin_description(model, config, task))
        outputs.append(outputs_after_build(config, descriptions[-1]["parameters"], model.trainable_variables))
        per_replica.append([(v.name, v.numpy()) for v in model.trainable_variables])
    names = [name for name, _ in per_replica[0]]
    stacked = [np.stack([weights[i][1] for weights in per_replica], axis=_replica_axis(name, fused))
               for i, name in enumerate(names)]
    # The same hash as a sequential trial's `initial_weights_sha256`: weights_sha256 of its variables.
    initial_hashes = [named_arrays_sha256(weights) for weights in per_replica]
    return names, stacked, outputs, initial_hashes, descriptions


def _index_batches(splits, seed_sets: list[SeedSet], config: TrialConfig) -> tf.data.Dataset:
    """[K, batch] indices into the training pool per step: each replica's examples in its own order.

    The same stateless shuffle keyed by (shuffle seed, epoch) as the sequential
    pipeline, applied to each replica's kept examples; gathers happen in-graph.
    """
    kept = tf.constant(np.stack([s[0] for s in splits]), tf.int64)  # [K, n]
    n = int(kept.shape[1])
    shuffle_seeds = [tf.constant(s.shuffle, tf.int64) for s in seed_sets]

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        orders = tf.stack([epoch_order(n, seed, epoch) for seed in shuffle_seeds])
        pool_indices = tf.gather(kept, orders, batch_dims=1)  # [K, n]
        return tf.data.Dataset.from_tensor_slices(tf.transpose(pool_indices)).batch(config.batch_size)

    batches = (tf.data.Dataset.range(config.epochs).flat_map(epoch_batches)
               .map(tf.transpose).enumerate().prefetch(tf.data.AUTOTUNE))
    options = tf.data.Options()
    options.deterministic = True
    return batches.with_options(options)


def _forward(variables: list[tf.Variable], x: tf.Tensor, config: TrialConfig, fused: bool,
             dropout_keys: list[tf.Tensor] | None = None) -> tf.Tensor:
    """The K MLPs on inputs [batch, ...] every replica shares (the fused path's training batch, and
    evaluation on either path), or per-replica inputs [K, batch, ...] (the batched path's training
    batch). Dropout when given keys. Returns [K, batch, outputs]."""
    bias1, kernel1, bias2, kernel2 = variables  # tf.Module orders variables by name
    if fused:  # one wide matmul over every replica's first kernel, [inputs, K * hidden]
        inputs, k, hidden = kernel1.shape
        wide = tf.matmul(tf.reshape(x, [tf.shape(x)[0], inputs]), tf.reshape(kernel1, [inputs, k * hidden]))
        first = tf.split(wide, k, axis=1)
    else:  # one matmul per replica, as its sequential trial runs it
        kernels = tf.unstack(kernel1)
        if dropout_keys is None:  # evaluation: one input batch for every replica
            batches = [tf.reshape(x, [tf.shape(x)[0], -1])] * len(kernels)
        else:
            batches = tf.unstack(tf.reshape(x, [len(kernels), tf.shape(x)[1], -1]))
        first = [tf.matmul(batch, kernel) for batch, kernel in zip(batches, kernels, strict=True)]
    rate = dropout_rate_of(config)
    outputs = []
    for r, (h, b1, w2, b2) in enumerate(zip(first, tf.unstack(bias1), tf.unstack(kernel2), tf.unstack(bias2),
                                            strict=True)):
        h = tf.nn.relu(h + b1)
        if dropout_keys is not None:
            h = dropout(h, rate, dropout_keys[r], layer=0)
        outputs.append(tf.matmul(h, w2) + b2)
    return tf.stack(outputs)


def _stacked_trainable(variables: list[tf.Variable], config: TrialConfig, seed_sets: list[SeedSet],
                       dataset, fused: bool) -> Trainable:
    """The K replicas as one Trainable for the one `train_step`: its loss is one mean batch loss per
    replica, [K], which the step sums (replicas share no weights, so each gets its own gradient)."""
    dropout_seeds = [tf.constant(s.dropout, tf.int64) for s in seed_sets]
    task = builtin_task(dataset.num_classes)

    def replica_losses(y: tf.Tensor, out: tf.Tensor, weights: tf.Tensor | None = None) -> tf.Tensor:
        """Each replica's mean batch loss, [K], computed as its sequential trial computes it (its examples'
        weights too, where they have them)."""
        k = out.shape[0]
        labels = [y] * k if fused else tf.unstack(y)
        replica_weights = [None] * k if weights is None else [weights] * k if fused else tf.unstack(weights)
        return tf.stack([task.loss(labels_r, out_r, weights_r) for labels_r, out_r, weights_r
                         in zip(labels, tf.unstack(out), replica_weights, strict=True)])

    return Trainable(
        variables=variables,
        forward=lambda x, step: _forward(variables, x, config, fused,
                                         [tf.stack([seed, step]) for seed in dropout_seeds]),
        update=Adam(variables, config.learning_rate).apply,
        predict=lambda x: _forward(variables, x, config, fused),
        task=dataclasses.replace(task, loss=replica_losses))


def _make_train_loop(trainable: Trainable, config: TrialConfig, seed_sets: list[SeedSet], dataset, fused: bool):
    """The outer loop over `train_step` on each replica's batch (fused: the one batch they share),
    gathered (and augmented) in-graph."""
    pool_x, pool_y = tf.constant(dataset.train_x), tf.constant(dataset.train_y)
    weights = example_weights(config, dataset)
    pool_w = None if weights is None else tf.constant(weights)
    augment_seeds = [tf.constant(s.augment, tf.int64) for s in seed_sets]

    @tf.function
    def replicas_step(batch_index: tf.Tensor, indices: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        if fused:
            indices = indices[0]  # the one order every replica shares
        x, y = tf.gather(pool_x, indices), tf.gather(pool_y, indices)  # [K, batch, ...]; fused: [batch, ...]
        if config.augment and fused:
            x = augment_images(x, tf.stack([augment_seeds[0], batch_index]))
        elif config.augment:
            x = tf.stack([augment_images(x[r], tf.stack([seed, batch_index])) for r, seed in enumerate(augment_seeds)])
        w = None if pool_w is None else tf.gather(pool_w, indices)
        per_replica, _ = train_step(trainable, x, y, step, weights=w)
        return per_replica

    return outer_loop(lambda batch, step: replicas_step(*batch, step))
