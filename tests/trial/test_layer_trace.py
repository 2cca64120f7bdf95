"""Per-layer fingerprints in a traced step: every layer call named by its path in execution order, the
bits of training unchanged, and nothing left behind on the model."""

import pytest
from conftest import user_config

from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial

# A functional model with a sub-model, a layer inside a layer, and a layer called twice.
LAYERED_MODEL = """\
import keras


class Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(16, activation="relu", name="inner")

    def call(self, inputs):
        return self.inner(inputs)


def layered():
    inputs = keras.Input((8, 8))
    flat = keras.layers.Flatten(name="flat")(inputs)
    shared = keras.layers.Dense(16, activation="relu", name="shared")
    sub = keras.Sequential([keras.layers.Dense(16, name="sub_dense")], name="sub")
    hidden = shared(Block(name="block")(sub(flat)))
    hidden = shared(hidden)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(hidden))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


@pytest.fixture
def layered(user_files):
    (user_files / "model.py").write_text((user_files / "model.py").read_text() + "\n\n" + LAYERED_MODEL)
    return user_config(user_files, "layered", epochs=1)


def test_every_layer_call_is_named_by_its_path_in_the_order_it_finishes_and_no_bit_changes(layered):
    traced, plain = (run_trial(layered, SeedSet.from_base(0), trace=trace) for trace in (True, False))
    assert traced.status["code"] == "ok", traced.status
    # The fingerprints read the step's tensors; training computes the same bits as without them.
    assert traced.fingerprints == plain.fingerprints
    trace = traced.trace
    # Inner layers finish before the layer holding them; the shared layer's second call is counted.
    assert trace["layer_paths"] == ["flat", "sub/sub_dense", "sub", "block/inner", "block", "shared",
                                    "shared (call 2)", "out"]
    assert trace["layer_classes"][:5] == ["Flatten", "Dense", "Sequential", "Dense", "Block"]
    steps = len(trace["steps"])
    assert trace["layer_steps"].shape == (steps, 8, 3, 8)  # per step and call: inputs, output, output gradient
    layer = trace["layer_steps"][0]
    # A call's input is the output of the call before it here, fingerprint for fingerprint; the gradient into
    # the flattened input is there too (watched, though no weight feeds it).
    assert (layer[1][0] == layer[0][1]).all() and (layer[0][2] != 0).any()
    # The sub-model's output is its one layer's output, and so is the gradient into it.
    assert (layer[2][1] == layer[1][1]).all() and (layer[2][2] == layer[1][2]).all()


def test_a_traced_step_leaves_every_layer_as_it_was(user_files):
    from harness.trial import keras_model, layer_trace
    from harness.trial.datasets import dataset_of

    config = user_config(user_files)
    model = keras_model.build_model(config, dataset_of(config), init_seed=0)
    paths = keras_model.layer_paths(model)
    with layer_trace.recording(layer_trace.LayerCalls(), model) as calls:
        assert all("call" in vars(layer) for _, layer in paths[1:])
        model(keras_model.first_examples(dataset_of(config)), training=True)
    assert calls.paths == ["flatten", "dense", "dropout", "dense_1"]
    assert not any("call" in vars(layer) for _, layer in paths)
    # Outside a traced step nothing is recorded.
    model(keras_model.first_examples(dataset_of(config)), training=True)
    assert len(calls.paths) == 4
