"""Grouped replicas: K trials of any model (your Keras model, the built-in CNN...) trained in one graph.

The stacked path (vectorized.py) knows the built-in MLPs' layers and stacks their weights; this one knows
nothing about the model. Each replica is the trainable its trial alone builds (`build_trainable`: its
init seed, its flipped bit, its dropout generators' state, its own optimizer from the model's compile()),
fed by its trial's own `tf.data` pipeline (its split, order and augmentation; one pipeline where all
replicas share them). One `tf.function` step calls `train_step` once per replica, and one loop call runs
many steps, so K trials pay one dispatch of the loop and one iterator instead of K; TF's executor runs
the replicas' independent ops side by side on its inter-op threads.

Bits you can rerun alone: every op a replica's numbers pass through is its trial's own op on its trial's
own tensors, so its weights, predictions and loss trace are its trial's bit for bit (tested on CPU for
the CNN and a Keras Sequential model with dropout). That is why it is not `model.stateless_call` over
stacked variables under `tf.vectorized_map`: measured on a Keras MLP, its logits and kernel gradients were
each replica's alone, but its bias gradients (a sum over the batch of a stacked tensor) were not, in every
replica (docs/speed.md), so no replica could be rerun alone.

Not grouped (`why_not`): XLA (a group would compile as one cluster, fused across replicas), a
tf.distribute strategy, `--trainer=keras_fit` or a model with its own train_step (Keras's own loop, one
model at a time), and a model drawing keras.random numbers with no seed (one global generator per process).
"""

from __future__ import annotations

import time

import tensorflow as tf

from harness.trial.config import TrialConfig
from harness.trial.datasets import (
    shares_batches,
    split_batches,
    split_pool,
    steps_per_epoch,
)
from harness.trial.fingerprints import weights_sha256
from harness.trial.seeds import SeedSet
from harness.trial.train import (
    TrialFailed,
    TrialResult,
    build_trainable,
    draws_unseeded_of,
    evaluate,
    nan_loss_failure,
    optimizer_sha256,
    outer_loop,
    outputs_after_build,
    prepare,
    run_group_loop,
    run_trial,
    step_on,
    trainable_weights_of,
    trainer_of,
    trial_result,
    user_code_fails_the_trial,
)

# --replicas=auto's K for this path, from `make speed`'s K scan (docs/speed.md, "Grouped replicas"): a
# group saves dispatch, not arithmetic, so it gains most for small models and little past 4; the graph,
# and its first call's trace, grows with K.
MAX_AUTO_REPLICAS = 4
# Past this many weights a replica's own step outweighs the dispatch a group saves (measured: the Keras
# 784-128-10 MLP, 0.1M weights, 1.7x at K=4; the CNN 1.4-1.7x; a 784-1024-10 one, 0.8M weights, 1.3x at
# most, for K times the memory): auto trains such models one by one.
AUTO_MAX_WEIGHTS = 500_000


def why_not(config: TrialConfig) -> str | None:
    """Why trials of this config cannot train as a group (one sentence), or None if they can."""
    if config.resume_epoch:
        return "the `resume` condition checkpoints each trial and finishes it in a fresh process of its own"
    trainer, reason = trainer_of(config)
    if trainer == "keras_fit":
        return (f"{config.model} has {reason}, which trains in its own Keras fit, one model at a time" if reason
                else "--trainer=keras_fit trains with Keras's own fit, one model at a time")
    if config.strategy != "none":
        return "a tf.distribute strategy spreads one model over devices"
    if config.xla:
        return "XLA would compile the group's step as one cluster, fused across replicas, so its bits could differ"
    if draws_unseeded_of(config):
        return (f"{config.model} draws keras.random numbers with no seed, from Keras's one global generator, which "
                "a group's replicas would share")
    return None


def auto_replicas(config: TrialConfig) -> int:
    """K for --replicas=auto on this path: MAX_AUTO_REPLICAS for models up to AUTO_MAX_WEIGHTS trainable
    weights (one build of the model counts them), else 1."""
    if why_not(config):
        return 1
    return MAX_AUTO_REPLICAS if trainable_weights_of(config) <= AUTO_MAX_WEIGHTS else 1


def run_grouped(configs: list[TrialConfig], seed_sets: list[SeedSet]) -> list[TrialResult]:
    """Trains len(configs) trials as one group; one result per trial, in order.

    The configs may differ only in `flip_bit` and `reduction_order` (the `bit` and `order` conditions);
    each must have `replicas` equal to the group's size. A group that fails as a whole (an op with no
    deterministic kernel, out of memory, an error in the model) trains its trials one at a time instead,
    so each gets the status it gets alone.
    """
    if any(_shared(c) != _shared(configs[0]) for c in configs) or configs[0].replicas != len(configs):
        raise ValueError("a replica group shares one config (apart from flip_bit, reduction_order) "
                         "with replicas == group size")
    try:
        with user_code_fails_the_trial(configs[0]):
            return _train_group(configs, seed_sets)
    except (TrialFailed, tf.errors.OpError, ValueError, ArithmeticError):
        return [run_trial(config, seeds) for config, seeds in zip(configs, seed_sets, strict=True)]


def _train_group(configs: list[TrialConfig], seed_sets: list[SeedSet]) -> list[TrialResult]:
    start = time.perf_counter()
    config, k = configs[0], len(configs)
    dataset = prepare(config)
    splits = [split_pool(dataset, seeds, config) for seeds in seed_sets]
    trainables, outputs, initial_hashes = [], [], []
    for replica_config, seeds in zip(configs, seed_sets, strict=True):
        trainable = build_trainable(replica_config, dataset, seeds)
        trainables.append(trainable)
        outputs.append(outputs_after_build(replica_config, trainable.description["parameters"], trainable.variables))
        initial_hashes.append(weights_sha256(trainable.fingerprinted))
    shared = shares_batches(config, seed_sets)
    batches = _batches(config, splits[:1] if shared else splits, seed_sets[:1] if shared else seed_sets)

    @tf.function
    def group_step(batch, step_number: tf.Tensor) -> tf.Tensor:
        per_replica = [batch] * k if shared else batch
        return tf.stack([step_on(trainable, replica_batch, step_number)[0]
                         for trainable, replica_batch in zip(trainables, per_replica, strict=True)])

    train_loop = outer_loop(group_step)
    total_steps = steps_per_epoch(len(splits[0].train_y), config.batch_size) * config.epochs
    setup_s = time.perf_counter() - start
    losses, timing = run_group_loop(train_loop, iter(batches), config, total_steps, k, start, setup_s)  # [steps, K]
    results = []
    for r, (replica_config, trainable, split, seeds) in enumerate(zip(configs, trainables, splits, seed_sets,
                                                                      strict=True)):
        failed = nan_loss_failure(losses[:, r], timing["wall_s"], trainable.description)
        if failed:
            results.append(failed)
            continue
        test_out, validation = evaluate(trainable, split)
        replica_outputs = {**outputs[r], "vectorized": {"replicas": k, "index": r, "path": "grouped"}}
        result = trial_result(replica_config, seeds, trainable.task, dataset, test_out, validation, losses[:, r],
                              weights_sha256(trainable.fingerprinted), replica_outputs, dict(timing),
                              initial_hashes[r], optimizer_sha256(trainable))
        result.model = trainable.description
        results.append(result)
    return results


def _shared(config: TrialConfig) -> TrialConfig:
    """What every member of a group has in common: its config without the per-replica fields."""
    return config.replace(flip_bit=-1, reduction_order=-1)


def _batches(config: TrialConfig, splits, seed_sets: list[SeedSet]) -> tf.data.Dataset:
    """The trial's own pipeline of (x, y) (or weighted (x, y, w)) batches for one split; for several, the
    replicas' pipelines zipped: one element is a tuple of their batches."""
    pipelines = [split_batches(split, seeds, config) for split, seeds in zip(splits, seed_sets, strict=True)]
    return pipelines[0] if len(pipelines) == 1 else tf.data.Dataset.zip(tuple(pipelines))
