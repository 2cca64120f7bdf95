"""Each random layer of a Keras model under the seed of its kind: augmentation layers (keras.layers.Random*)
under `augment`, the Dropout family and noise layers under `dropout`."""

from conftest import user_config

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
