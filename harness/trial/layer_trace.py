"""Each layer's inputs, output and the gradient into that output, fingerprinted in a traced train step.

`harness.diverge` names the first layer where two runs part: the first layer, in execution order, whose
inputs are equal in both runs and whose output differs. For that, a traced step (`make_train_loop(trace=True)`)
records every layer call of its forward pass while it is traced: a user's Keras layers by wrapping each layer
instance's `call` (Sequential, functional and subclassed models alike, layers inside layers named by their
path, `keras_model.layer_paths`), the built-in models by calling `layer_output` in their forward. The train
step then takes the gradient of its objective with respect to the recorded outputs too (`LayerCalls.gradients`),
and the step returns, per call, 8-byte `tf.fingerprint`s of its inputs, its output and that gradient.

Calls are listed in the order they finish: a layer inside another finishes first, so a planted difference in
an inner layer is named by the inner layer's path, not its container's. A layer called twice in a step is
listed twice (`dense (call 2)`). Nothing is recorded outside a traced step: untraced training is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

# The fingerprints each layer call gets in a traced step, in this order (the trace's third axis).
ROWS = ("inputs", "output", "output gradient")

# The LayerCalls recording now, while a traced step's forward pass is traced; None otherwise.
_recording: LayerCalls | None = None


class LayerCalls:
    """The layer calls of one traced train step's forward pass, in the order they finished."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._called: list[str] = []  # each call's layer path, without the call count
        self.classes: list[str] = []
        self._inputs: list[list[tf.Tensor]] = []
        self._outputs: list[list[tf.Tensor]] = []
        self._output_gradients: list[list[tf.Tensor]] | None = None
        self.tape: Any = None  # the train step's tape, which watches every recorded output

    def add(self, path: str, kind: str, inputs: Any, output: Any) -> None:
        earlier = self._called.count(path)
        self._called.append(path)
        self.paths.append(f"{path} (call {earlier + 1})" if earlier else path)
        self.classes.append(kind)
        self._inputs.append(_tensors(inputs))
        outputs = _tensors(output)
        if self.tape is not None:
            # Watched, so that a layer no weight feeds (a Flatten of the input) gets its gradient too.
            self.tape.watch([t for t in outputs if t.dtype.is_floating])
        self._outputs.append(outputs)

    def gradients(self, tape: Any, objective: tf.Tensor, variables: list[Any]) -> list[Any]:
        """The objective's gradients with respect to `variables` (returned, as tape.gradient gives them) and,
        in the same backward pass, to every recorded output (kept for `fingerprints`)."""
        watched = [t for outputs in self._outputs for t in outputs if t.dtype.is_floating]
        found = tape.gradient(objective, [*variables, *watched])
        by_output = iter(found[len(variables):])
        self._output_gradients = [
            [_or_zeros(next(by_output), t) if t.dtype.is_floating else tf.zeros([0]) for t in outputs]
            for outputs in self._outputs]
        return found[:len(variables)]

    def fingerprints(self) -> tf.Tensor:
        """[calls * 3, 8] uint8: per call, the fingerprints of its inputs, its output and the gradient into it."""
        gradients = self._output_gradients or [[] for _ in self._outputs]
        rows = [_fingerprint(group) for call in zip(self._inputs, self._outputs, gradients, strict=True)
                for group in call]
        return tf.stack(rows) if rows else tf.zeros([0, 8], tf.uint8)


def layer_output(path: str, kind: str, inputs: Any, output: tf.Tensor) -> tf.Tensor:
    """`output`, unchanged; recorded as layer `path`'s output (of class `kind`) when a traced step is traced.
    The built-in models call this in their forward pass."""
    if _recording is not None:
        _recording.add(path, kind, inputs, output)
    return output


@contextlib.contextmanager
def recording(calls: LayerCalls, keras_model: Any = None) -> Iterator[LayerCalls]:
    """Records into `calls` every layer call made inside: the built-in models' `layer_output`, and the calls of
    every layer of `keras_model` (each instance's `call` wrapped for the while, then restored)."""
    global _recording
    wrapped = _wrap_keras_layers(keras_model) if keras_model is not None else []
    previous, _recording = _recording, calls
    try:
        yield calls
    finally:
        _recording = previous
        for layer in wrapped:
            del layer.call  # the class's own call again


def _wrap_keras_layers(model: Any) -> list[Any]:
    from harness.trial.keras_model import layer_paths

    wrapped = []
    for path, layer in layer_paths(model)[1:]:  # the model's own call is the whole forward pass
        if "call" in vars(layer):
            continue  # a layer held under two paths: wrapped once
        original = layer.call

        def call(*args: Any, _original: Any = original, _path: str = path, _layer: Any = layer, **kwargs: Any) -> Any:
            output = _original(*args, **kwargs)
            inputs = args[0] if args else kwargs.get("inputs", next(iter(kwargs.values()), None))
            return layer_output(_path, type(_layer).__name__, inputs, output)

        layer.call = call
        wrapped.append(layer)
    return wrapped


def _tensors(value: Any) -> list[tf.Tensor]:
    return [t for t in tf.nest.flatten(value) if isinstance(t, (tf.Tensor, tf.Variable))]


def _or_zeros(gradient: Any, tensor: tf.Tensor) -> tf.Tensor:
    """A gradient as a dense tensor; zeros for an output the objective does not depend on."""
    return tf.zeros_like(tensor) if gradient is None else tf.convert_to_tensor(gradient)


def _fingerprint(tensors: list[tf.Tensor]) -> tf.Tensor:
    """8 bytes: farmhash64 of one tensor's bytes, or of the fingerprints of several; zeros for none."""
    rows = [tf.fingerprint(tf.reshape(t, [1, -1]))[0] for t in tensors]
    if not rows:
        return tf.zeros([8], tf.uint8)
    return rows[0] if len(rows) == 1 else tf.fingerprint(tf.reshape(tf.stack(rows), [1, -1]))[0]
