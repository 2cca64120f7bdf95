"""Each random layer of a Keras model under the seed of its kind: augmentation layers (keras.layers.Random*)
under `augment`, the Dropout family and noise layers under `dropout`."""

import pytest
from conftest import user_config

from harness.errors import UsageError
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial

AUGMENTED = """\
import keras


def create_model():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomTranslation(0.1, 0.1),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.GaussianNoise(0.1),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


def test_augmentation_layers_follow_the_augment_seed_and_noise_the_dropout_seed(user_files):
    (user_files / "model.py").write_text(AUGMENTED)
    config = user_config(user_files)  # the harness's own augmentation off: only the layers can vary
    base = SeedSet.from_base(0)
    control, again = (run_trial(config, base) for _ in range(2))
    assert control.status["code"] == "ok" and control.fingerprints == again.fingerprints
    sources = control.model["seed_sources"]
    assert sorted(sources.values()) == ["augment", "augment", "dropout", "dropout"]
    assert {path.split("/")[-1].split("#")[0] for path, source in sources.items() if source == "augment"} == \
        {"random_flip", "random_translation"}
    augmented = run_trial(config, base.replace(augment=base.augment + 1))
    dropped = run_trial(config, base.replace(dropout=base.dropout + 1))
    # Each seed changes the run, from the same initial weights.
    for other in (augmented, dropped):
        assert other.fingerprints["initial_weights_sha256"] == control.fingerprints["initial_weights_sha256"]
        assert other.fingerprints["weights_sha256"] != control.fingerprints["weights_sha256"]
    assert augmented.fingerprints["weights_sha256"] != dropped.fingerprints["weights_sha256"]


PLAIN = """\
import keras


def create_model():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


@pytest.mark.slow
def test_a_condition_that_can_vary_nothing_says_so(user_files):
    from conftest import run_conditions

    from harness.analysis.summary import format_summary, summary_from_records
    from harness.studies.conditions import default_conditions
    from harness.studies.records import schema_errors

    (user_files / "model.py").write_text(PLAIN)
    config = user_config(user_files)
    assert "augment" not in [c.name for c in default_conditions(config)]
    summary = summary_from_records(run_conditions(config, "control,dropout,augment", 2, user_files / "study"),
                                   directory=user_files / "study")
    assert schema_errors(summary) == []
    rows = {row["name"]: row for row in summary["conditions"]}
    assert rows["dropout"]["varies_nothing"] == ("the model has no layer the dropout seed drives (no Dropout, "
                                                 "noise or other random layer)")
    assert rows["control"]["varies_nothing"] is None
    assert ("The augment condition varies nothing here: the model has no augmentation layer and the harness's own "
            "augmentation is off (--augment), so its spread says nothing about augment randomness.") in \
        summary["findings"]
    printed = format_summary(summary)
    # Each of the two reads "nothing here" in its varies cell and in its sentence.
    assert [line.split()[:3] for line in printed.splitlines() if line.startswith(("dropout ", "augment "))] == \
        [["dropout", "nothing", "here"], ["augment", "nothing", "here"]]
    assert printed.count("varies nothing here") == 2
    # A model with augmentation layers: `augment` is a default condition, and it varies something.
    (user_files / "augmented.py").write_text(AUGMENTED)
    augmented = user_config(user_files).replace(model=f"{user_files}/augmented.py:create_model")
    assert "augment" in [c.name for c in default_conditions(augmented)]



CONSTANT_SEEDS = """\
import keras


class ConstantNoise(keras.layers.Layer):
    # keras.random with an int seed: the same numbers at every step of every run, whatever the harness seeds.
    def call(self, x, training=False):
        return x + keras.random.normal(keras.ops.shape(x), stddev=0.5, seed=3) if training else x


def _compiled(*layers):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(32), *layers,
                              keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def seeded_layers():
    # A layer's seed= only sets its SeedGenerator's first state, which the harness sets from the dropout seed.
    return _compiled(keras.layers.GaussianNoise(0.5, seed=3), keras.layers.Dropout(0.5, seed=7))


def constant_draws():
    return _compiled(ConstantNoise(name="noise"))
"""


def test_a_layer_drawing_with_a_constant_seed_is_named_and_one_given_a_seed_follows_the_dropout_seed(user_files):
    from harness.analysis.summary import _varies_nothing
    from harness.trial.train import model_facts

    (user_files / "model.py").write_text(CONSTANT_SEEDS)
    # keras.random.normal(..., seed=3) in a layer's call: the same noise whatever the dropout seed, named.
    constant = user_config(user_files, "constant_draws", epochs=1)
    assert model_facts(constant).random_sources == () and model_facts(constant).constant_seed_draws == (("noise", 3),)
    base = SeedSet.from_base(0)
    control, dropped = run_trial(constant, base), run_trial(constant, base.replace(dropout=base.dropout + 1))
    assert control.status["code"] == "ok"
    assert control.fingerprints["weights_sha256"] == dropped.fingerprints["weights_sha256"]
    assert control.model["constant_seeds"] == {"noise": [3]}
    # Its noise is drawn by position, as a Dropout's mask is: `order` would move it.
    with pytest.raises(UsageError) as refused:
        run_trial(constant.replace(reduction_order=1), base)
    assert str(refused.value) == (f"the `order` condition permutes each batch and keeps every example's random mask; "
                                  f"{constant.model} draws masks by position (noise), so the masks would move too: "
                                  "leave `order` out for this model.")
    assert _varies_nothing("dropout", [{"model": control.model, "config": {}}]) == (
        "the layer noise draws with a constant seed (keras.random seed=3 in its call), the same numbers in every run, "
        "and no layer follows the dropout seed")
    # GaussianNoise(seed=3), Dropout(seed=7): a seed= only sets the first state of the layer's SeedGenerator, which
    # the harness sets from the dropout seed (test above: the dropout seed varies such layers).
    seeded = model_facts(user_config(user_files, "seeded_layers"))
    assert seeded.random_sources == ("dropout",) and seeded.constant_seed_draws == ()
