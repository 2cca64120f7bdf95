"""A user's Keras model, with each source of randomness under its own seed.

The user's function is called as they wrote it; the harness decides around it:
- `init`: the model is built after `keras.backend.clear_session()` and
  `keras.utils.set_random_seed(init_seed)`, so its initial weights are a pure
  function of the init seed (and layer names do not drift across trials of one
  process). `tf.random.set_seed` alone would not do it: Keras 3 initializers
  draw from Keras's own seed generator, seeded from Python's `random`.
- `dropout`, `augment`: after the build, the state of every
  `keras.random.SeedGenerator` in the model is set from its source's seed and
  the layer's path: Keras's augmentation layers (RandomFlip, RandomRotation...)
  from the augment seed, the rest (Dropout, SpatialDropout, AlphaDropout,
  GaussianDropout, GaussianNoise, a layer's own generator) from the dropout seed.
  Unseeded generators take their seed from Python's `random` when the layer is
  constructed, so without this, init and dropout would share one stream. A model
  whose `call` draws `keras.random` numbers with no seed draws from Keras's one
  global SeedGenerator: it is set from the dropout seed too. A layer given
  `seed=3` (GaussianNoise, Dropout) holds a generator like any other, set the
  same way; but `keras.random.normal(..., seed=3)` in a `call` draws the same
  numbers at every step of every run, which no seed of the harness reaches: the
  probe names such layers (`random_draws`), and records say so.
- `shuffle`, `split`, `augment`: the harness's own `tf.data` pipeline too (augment: its own
  augmentation, where --augment turns it on).

The optimizer and loss come from the model's `compile()` (or `--optimizer`,
`--loss`), as Keras objects: no re-implementation of Adam for user models.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from harness.errors import UsageError, first_line
from harness.trial import features, user_code
from harness.trial.config import TrialConfig
from harness.trial.datasets import Dataset
from harness.trial.seeds import SeedSet, derive_seed
from harness.trial.trainable import Task, Trainable, argmax_classes

# A model function with a parameter of this name (e.g. `create_model(seed)`) gets the init seed,
# unless --model_args gives it.
SEED_ARGUMENT = "seed"
# From this many trainable parameters, `--xla_update=auto` compiles the optimizer's update (update_mode).
XLA_UPDATE_MIN_PARAMETERS = 60_000
# How records name Keras's global SeedGenerator, which keras.random calls with no seed draw from.
GLOBAL_GENERATOR_PATH = "keras.random with no seed#0"
# keras.Model methods a model class may override to train otherwise than a plain forward, loss and
# gradient step (gradient clipping, training part of the model, its own loss): the harness's step would
# train another procedure, so such a model trains in its own Keras fit (train.trainer_of).
CUSTOM_STEP_METHODS = ("train_step", "compute_loss")


def build(config: TrialConfig, dataset: Dataset, seeds: SeedSet, draws: RandomDraws) -> Trainable:
    """The user's model, built from the init seed, its random layers' state set from the dropout and augment
    seeds. `draws`: how its call draws keras.random numbers other than from its layers' generators
    (`random_draws`, probed once per model by the caller)."""
    import keras

    model = build_model(config, dataset, seeds.init)
    seed_sources = seed_random_layers(model, seeds)
    if draws.unseeded:
        seed_sources[GLOBAL_GENERATOR_PATH] = "dropout"
    install_global_generator(derive_seed(seeds.dropout, GLOBAL_GENERATOR_PATH))
    seed_generator_paths = list(seed_sources)
    # Drawn by position too: a layer drawing with a constant seed (the same numbers at each step, row by row).
    drawing = [*seed_generator_paths, *dict.fromkeys(path for path, _ in draws.constant_seeds)]
    # A model with its own train step trains in its own fit, which refuses `order` for that reason (train.py).
    if config.batch_order_seed is not None and drawing and not custom_steps(model):
        raise UsageError(f"the `order` condition permutes each batch and keeps every example's random mask; "
                         f"{config.model} draws masks by position ({drawing[0]}), so the masks would "
                         "move too: leave `order` out for this model.")
    task = task_for(config, model, dataset)
    optimizer = optimizer_for(config, model)
    variables = list(model.trainable_variables)
    if not variables:
        raise UsageError(f"{config.model} returned a model with no trainable weights.")
    # Slots are created now, eagerly: the train step (a tf.function) only updates them.
    optimizer.build(variables)

    def apply_update(gradients: list[tf.Tensor]) -> None:
        optimizer.apply_gradients(zip(gradients, variables, strict=True))

    parameters = int(sum(np.prod(v.shape) for v in variables))
    update = update_mode(config, parameters)  # from the trainable weights: those the update touches
    if update == "xla":
        apply_update = tf.function(apply_update, jit_compile=True)

    description = {
        # Keras's count_params(): every weight, trainable and not, as the fingerprint covers them.
        "parameters": int(model.count_params()),
        "trainable_parameters": parameters,
        "update": update,
        "architecture": architecture(model),
        "optimizer": {"class": type(optimizer).__name__, "learning_rate": _learning_rate(optimizer)},
        "loss": task.loss_name,
        "task": task.kind,
        "seed_generators": seed_generator_paths,
        "seed_sources": seed_sources,
        "constant_seeds": constant_seeds_by_layer(draws.constant_seeds),
        "custom_steps": custom_steps(model),
        "keras": keras.__version__,
    }
    return Trainable(
        variables=variables,
        # A permuted batch (row_order) needs nothing more: a model without random layers treats each
        # example alike wherever it is in the batch (checked above).
        forward=lambda x, step, row_order=None: model(x, training=True),
        update=lambda gradients, step: apply_update(gradients),
        predict=lambda x: model(x, training=False),
        task=task,
        # Loss terms the layers added in the training forward pass (add_loss, activity and weight regularizers),
        # as Keras's own fit adds them; read right after that pass, in its graph.
        layer_losses=lambda: model.losses,
        state=list(model.weights),
        optimizer_state=lambda: optimizer.variables,
        layers=tuple(layer.name for layer in model.layers),
        description=description,
        keras_model=model,
        reduction_order=config.batch_order_seed,
    )


def update_mode(config: TrialConfig, parameters: int) -> str:
    """How the optimizer's update runs: "xla" (compiled alone), "op by op", or "in the step" (--xla).

    Keras's update is a dozen elementwise ops per variable, each a pass over memory; XLA fuses them
    into a few kernels but costs about 0.1 ms a call to launch. Measured here (2 cores, Adam): op by
    op 0.085 ms against 0.107 compiled at 51k parameters, 0.153 against 0.096 at 65k, 0.316 against
    0.180 at 102k (the examples' MLP on 28x28 inputs). So `auto` compiles it from XLA_UPDATE_MIN_PARAMETERS.
    """
    if config.xla:
        return "in the step"
    if config.xla_update == "on" or (config.xla_update == "auto" and parameters >= XLA_UPDATE_MIN_PARAMETERS):
        return "xla"
    return "op by op"


def build_model(config: TrialConfig, dataset: Dataset, init_seed: int) -> Any:
    """Calls the user's function under the init seed and builds the model on the data's example shape."""
    with user_code.guarded(config.model, user_code.DOING["model"]):
        return _build_model(config, dataset, init_seed)


def _build_model(config: TrialConfig, dataset: Dataset, init_seed: int) -> Any:
    import keras

    function = user_code.resolve_function(config.model, "model")
    kwargs = dict(config.model_args)
    if SEED_ARGUMENT not in kwargs and user_code.accepts_argument(function, SEED_ARGUMENT):
        kwargs[SEED_ARGUMENT] = init_seed
    keras.backend.clear_session()
    keras.utils.set_random_seed(init_seed)
    model = user_code.call(function, config.model, "model", **kwargs)
    if not isinstance(model, keras.Model):
        raise UsageError(f"{config.model} returned {type(model).__name__}, not a Keras model.")
    was_built = model.built and bool(model.trainable_variables)
    try:
        # Calling the model once on real examples builds any model, Sequential or subclassed, and shows
        # that a built one takes this data.
        model(first_examples(dataset), training=False)
    except Exception as error:
        # Keras's reason follows; the harness only knows the call failed (a shape, a vocabulary, a dtype...).
        problem = "fails on" if was_built else "cannot be built on"
        raise UsageError(f"{config.model} returned a model that {problem} the data's examples of shape "
                         f"{features.describe_shapes(dataset.train_x)}: {first_line(error)}.") from None
    return model


def first_examples(dataset: Dataset) -> Any:
    """The training pool's first two examples as tensors (one, or several inputs): what a probe call takes."""
    return features.constant(features.take(dataset.train_x, slice(0, 2)))


def custom_steps(model: Any) -> list[str]:
    """The CUSTOM_STEP_METHODS the model's class defines itself (not Keras's own)."""
    import keras

    return [name for name in CUSTOM_STEP_METHODS if getattr(type(model), name, None) is not getattr(keras.Model, name)]


def seed_generators(model: Any) -> list[tuple[str, Any]]:
    """(`layer path#index`, generator) for every keras.random.SeedGenerator in the model: where Keras 3
    keeps the randomness of Dropout, noise and augmentation layers."""
    return [(path, generator) for path, generator, _ in _generators_with_layers(model)]


def seed_random_layers(model: Any, seeds: SeedSet) -> dict[str, str]:
    """Sets every SeedGenerator's state from (its source's seed, its layer's path); returns {path: source}.

    Keras's augmentation layers (RandomFlip, RandomRotation, ... : the preprocessing layers) follow the
    `augment` seed; everything else (the Dropout family, GaussianNoise, a layer's own generator) follows
    `dropout`, the seed of the randomness a model draws while it trains."""
    found = {}
    for path, generator, layer in _generators_with_layers(model):
        source = _seed_source(layer)
        state = generator.state
        state.assign(np.array([derive_seed(getattr(seeds, source), path), 0], dtype=_numpy_dtype(state.dtype)))
        found[path] = source
    return found


def random_sources(model: Any, unseeded_draws: bool) -> list[str]:
    """The seeds the model's randomness follows ("augment", "dropout"), without setting them: its random layers',
    and "dropout" for keras.random draws with no seed (`RandomDraws.unseeded`)."""
    sources = {_seed_source(layer) for _, _, layer in _generators_with_layers(model)}
    return sorted(sources | ({"dropout"} if unseeded_draws else set()))


class RandomDraws(NamedTuple):
    """How a model's training-mode forward pass draws keras.random numbers other than from its layers' own
    SeedGenerators (`random_draws`)."""

    unseeded: bool  # with no seed: from Keras's one global SeedGenerator
    # With a Python int seed (`keras.random.normal(shape, seed=3)`): the same numbers at every step of every
    # run. (layer path, seed) per layer and seed, in the order drawn.
    constant_seeds: tuple[tuple[str, int], ...]


def random_draws(model: Any, dataset: Dataset) -> RandomDraws:
    """How the model's training-mode forward pass draws keras.random numbers besides its layers' generators:
    with no seed (from Keras's one global SeedGenerator), and with a constant int seed, by layer. Probed in a
    keras.StatelessScope, which keeps every assignment (the generators' counters, BatchNorm's statistics) from
    reaching the model: nothing in it changes. Every keras.random function takes its seed through Keras's
    `draw_seed`, which is watched during the one call."""
    import keras
    from keras.src.random import seed_generator

    generator = install_global_generator(0)
    paths = {id(layer): path for path, layer in layer_paths(model)}
    constant: dict[tuple[str, int], None] = {}
    original = seed_generator.draw_seed

    def watched_draw_seed(seed: Any) -> Any:
        if isinstance(seed, int) and not isinstance(seed, bool):
            constant[(_drawing_layer_path(paths, model), seed)] = None
        return original(seed)

    # The backends import draw_seed by name: each module holding it gets the watched one, for this call only.
    holders = [module for name, module in list(sys.modules.items())
               if name.startswith("keras.src") and getattr(module, "draw_seed", None) is original]
    for module in holders:
        module.draw_seed = watched_draw_seed
    try:
        with keras.StatelessScope() as scope:
            model(first_examples(dataset), training=True)
    except Exception:  # noqa: BLE001  A model that fails in training mode fails its trial, which says why.
        return RandomDraws(False, ())
    finally:
        for module in holders:
            module.draw_seed = original
    return RandomDraws(scope.get_current_value(generator.state) is not None, tuple(constant))


def _drawing_layer_path(paths: dict[int, str], model: Any) -> str:
    """The path of the layer whose `call` is drawing now: the innermost `call` on the stack of a layer of the
    model (the model's own name for a draw in the model's own call)."""
    frame = sys._getframe(2)
    while frame is not None:
        holder = frame.f_locals.get("self") if frame.f_code.co_name == "call" else None
        if id(holder) in paths:
            return paths[id(holder)]
        frame = frame.f_back
    return model.name


def constant_seeds_by_layer(constant_seeds: Sequence[Sequence[Any]]) -> dict[str, list[int]]:
    """The record's `model.constant_seeds`: {layer path: the int seeds its call draws keras.random numbers with}."""
    by_layer: dict[str, list[int]] = {}
    for path, seed in constant_seeds:
        by_layer.setdefault(path, []).append(int(seed))
    return by_layer


def install_global_generator(seed: int) -> Any:
    """A new global SeedGenerator for keras.random calls with no seed, from `seed`. Keras creates it lazily from
    Python's `random` (so from the init seed) and has no public setter: this is its private global slot."""
    import keras
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    generator = keras.random.SeedGenerator(seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, generator)
    return generator


def global_generator() -> Any:
    """Keras's global SeedGenerator now (the one keras.random calls with no seed draw from), or None before any."""
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR

    return global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)


def _seed_source(layer: Any) -> str:
    """The seed a random layer follows: "augment" for a Keras preprocessing layer (keras.layers.Random*) or a
    layer built on one, "dropout" for every other."""
    augmentation = any(cls.__module__.startswith("keras.src.layers.preprocessing") for cls in type(layer).__mro__)
    return "augment" if augmentation else "dropout"


def _generators_with_layers(model: Any) -> list[tuple[str, Any, Any]]:
    """(`path#index`, generator, layer) for every SeedGenerator, the path written one way for every layer: the
    names of the layers that hold it, from the model's own down (`dropout#0`, `augment/random_flip#0`,
    `block/dropout#0`), and the model's name for a generator of the model itself. Keras's own `layer.path`
    depends on when the layer was built (`sequential/random_flip` beside `dropout`)."""
    return [(f"{path}#{index}", generator, layer) for path, layer in layer_paths(model)
            for index, generator in enumerate(getattr(layer, "_seed_generators", ()))]


def layer_paths(model: Any) -> list[tuple[str, Any]]:
    """(path, layer) for the model and every layer inside it, depth first; a layer held twice is listed once."""
    found, seen = [], set()

    def visit(layer: Any, path: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        found.append((path, layer))
        for child in _children(layer):
            visit(child, f"{path}/{child.name}" if layer is not model else child.name)

    visit(model, model.name)
    return found


def _children(layer: Any) -> list[Any]:
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten(include_self=False, recursive=False))
    return list(getattr(layer, "layers", []))


def _numpy_dtype(dtype: Any) -> Any:
    return getattr(dtype, "as_numpy_dtype", dtype)


def task_for(config: TrialConfig, model: Any, dataset: Dataset) -> Task:
    """The loss (from --loss, else compile()) and what the outputs mean, read from the loss and the data."""
    loss, name = _loss(config, model)
    outputs = model(first_examples(dataset), training=False)
    if isinstance(outputs, (list, tuple, dict)):
        raise UsageError(f"{config.model} returned a model with several outputs; the harness trains and scores a "
                         f"model with one output: it takes {features.SUPPORTED_FORMS}.")
    width = int(outputs.shape[-1]) if outputs.shape.rank and outputs.shape.rank > 1 else 1
    labels = dataset.train_y
    values = np.concatenate([labels.ravel(), dataset.test_y.ravel()]).astype(np.float64)
    kind = name.lower().replace("_", " ")
    one_hot = labels.ndim == 2 and labels.shape[1] > 1
    # Class labels: integers, one-hot rows, or (what pandas gives) whole-number floats under a sparse loss.
    if width > 1 and (dataset.num_classes or ("sparse" in kind and not one_hot)):
        # Class indices are checked one by one: the label out of range is named, not only how many classes.
        if one_hot and width < dataset.num_classes:
            raise UsageError(f"{config.model} has {width} outputs but the one-hot labels of {config.dataset} name "
                             f"{dataset.num_classes} classes.")
        if not one_hot:
            bad = values[(values < 0) | (values >= width) | (values != np.rint(values))]
            if bad.size:
                raise UsageError(f"{config.model}'s loss takes class labels 0 to {width - 1}, and the labels of "
                                 f"{config.dataset} include {_worst(bad, 0, width - 1)}.")
        targets = argmax_classes if one_hot else (lambda y: np.asarray(y).reshape(-1).astype(np.int64))
        return Task("multiclass", width, loss, argmax_classes, targets, name)
    if width == 1 and "binary" in kind:
        if values.min() < 0 or values.max() > 1:
            raise UsageError(f"{config.model}'s loss ({name}) takes labels from 0 to 1, and the labels of "
                             f"{config.dataset} include {_worst(values[(values < 0) | (values > 1)], 0, 1)}.")
        if np.all((values == 0) | (values == 1)):
            threshold = 0.0 if _from_logits(loss) else 0.5
            return Task("binary", 2, loss, lambda out: (np.asarray(out).reshape(-1) > threshold).astype(np.int64),
                        lambda y: np.asarray(y).reshape(-1).astype(np.int64), name)
        # Soft targets between 0 and 1: scored by their loss, as a regression.
    return Task("regression", 0, loss, loss_name=name)


def _worst(bad: np.ndarray, low: float, high: float) -> str:
    """The label to name among those out of range: the lowest below `low`, else the highest above `high`, else
    the first that is not a whole number; as the data writes it (`9`, `-1`, `0.5`)."""
    value = bad.min() if bad.min() < low else bad.max() if bad.max() > high else bad[0]
    return f"{value:g}"


def _loss(config: TrialConfig, model: Any) -> tuple[Any, str]:
    import keras

    spec = config.loss or (model.loss if getattr(model, "compiled", False) else None)
    if spec is None:
        raise UsageError(f"{config.model} returned a model that is not compiled; compile it in the function or "
                         "pass --loss (e.g. sparse_categorical_crossentropy or mse) and --optimizer.")
    if isinstance(spec, (list, tuple, dict)):
        raise UsageError(f"{config.model} is compiled with one loss per output; the harness trains and scores a "
                         f"model with one output: it takes {features.SUPPORTED_FORMS}.")
    try:
        loss = keras.losses.get(spec) if isinstance(spec, str) else spec
    except ValueError:
        raise UsageError(f"unknown Keras loss {spec!r}.") from None
    if loss is None or not callable(loss):
        raise UsageError(f"{config.model}'s loss {spec!r} is not a Keras loss.")
    name = spec if isinstance(spec, str) else getattr(loss, "name", None) or getattr(loss, "__name__", "loss")
    if not isinstance(loss, keras.losses.Loss):
        # A loss function (e.g. the one "mse" names) gives one value per example; compile() reduces
        # them to the batch mean, as a Loss object does.
        # compile() also brings targets and outputs to one rank first ((n,) labels for a (n, 1) output).
        # Weighted, it is the wrapper compile() puts around it, which weights each example's value (Keras's
        # reduce_weighted_values) before that mean.
        # The wrapper is Keras's own, not public (compile_utils.get_loss uses it); Keras is pinned.
        from keras.src.losses.losses import LossFunctionWrapper

        function, weighted = loss, LossFunctionWrapper(loss)

        def loss(targets: Any, outputs: Any, weights: Any = None) -> Any:
            if weights is not None:
                return weighted(targets, outputs, weights)
            return tf.reduce_mean(function(*_same_rank(targets, outputs)))
    return loss, str(name)


def _same_rank(targets: Any, outputs: Any) -> tuple[Any, Any]:
    """Targets and outputs whose ranks differ by a trailing axis of 1, given that axis both, as Keras's loss
    wrapper does before it calls a loss function; sparse labels for wider outputs are left as they are."""
    target_rank, output_rank = len(targets.shape), len(outputs.shape)
    if target_rank == output_rank - 1 and outputs.shape[-1] == 1:
        return tf.expand_dims(targets, -1), outputs
    if output_rank == target_rank - 1 and targets.shape[-1] == 1:
        return targets, tf.expand_dims(outputs, -1)
    return targets, outputs


def _from_logits(loss: Any) -> bool:
    config = loss.get_config() if hasattr(loss, "get_config") else {}
    return bool(config.get("from_logits", False))


def optimizer_for(config: TrialConfig, model: Any) -> Any:
    """--optimizer, else the compiled one, else Adam; --learning_rate, when given, overrides its rate."""
    import keras

    if config.optimizer:
        try:
            optimizer = keras.optimizers.get(config.optimizer)
        except ValueError:
            raise UsageError(f"unknown Keras optimizer {config.optimizer!r}.") from None
    elif getattr(model, "compiled", False) and getattr(model, "optimizer", None) is not None:
        optimizer = model.optimizer
    else:
        optimizer = keras.optimizers.Adam()
    if config.learning_rate is not None:
        optimizer.learning_rate = config.learning_rate
    return optimizer


def compile_for_fit(config: TrialConfig, model: Any) -> None:
    """For the keras_fit trainer: the user's compile() stands; --optimizer or --loss (or no compile at all)
    compile it with those. A --learning_rate was already set on the optimizer (optimizer_for)."""
    if getattr(model, "compiled", False) and not (config.optimizer or config.loss):
        return
    loss, _ = _loss(config, model)
    model.compile(optimizer=optimizer_for(config, model), loss=loss)


def _learning_rate(optimizer: Any) -> float | None:
    try:
        return float(np.asarray(optimizer.learning_rate))
    except (TypeError, ValueError):  # A schedule: no single rate.
        return None


def architecture(model: Any) -> list[dict[str, Any]]:
    """Each top-level layer: name, class and parameter count (a nested model counts as one layer)."""
    return [{"layer": layer.name, "class": type(layer).__name__,
             "parameters": int(sum(np.prod(v.shape) for v in layer.weights))} for layer in model.layers]
