"""The weights' fingerprint covers every variable of a Keras model, trainable and not (BatchNorm's moving
statistics), the optimizer's state has its own, and `parameters` is Keras's count_params()."""

import keras
from conftest import run_conditions, user_config

from harness.studies.records import schema_errors
from harness.trial import keras_model
from harness.trial.datasets import dataset_of
from harness.trial.fingerprints import weights_sha256
from harness.trial.seeds import SeedSet
from harness.trial.train import build_trainable, run_trial, trainable_weights_of

BATCHNORM = """\
import keras


def create_model():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


def test_the_fingerprint_covers_the_moving_statistics(user_files):
    (user_files / "model.py").write_text(BATCHNORM)
    config = user_config(user_files)
    trainable = build_trainable(config, dataset_of(config), SeedSet.from_base(0))
    model = trainable.keras_model
    assert trainable.description["parameters"] == model.count_params()
    assert trainable.description["trainable_parameters"] == trainable_weights_of(config) < model.count_params()
    paths = [v.path for v in trainable.fingerprinted]
    assert any(p.endswith("moving_mean") for p in paths) and any(p.endswith("moving_variance") for p in paths)
    # Two models equal in every trainable weight but one moving statistic: two hashes.
    before = weights_sha256(trainable.fingerprinted)
    moving_mean = next(v for v in model.weights if v.path.endswith("moving_mean"))
    moving_mean.assign(moving_mean + 1.0)
    assert weights_sha256(trainable.variables) == weights_sha256(trainable.variables)
    assert weights_sha256(trainable.fingerprinted) != before


def test_a_trial_records_the_whole_state_and_the_optimizers(user_files):
    (user_files / "model.py").write_text(BATCHNORM)
    config = user_config(user_files)
    first, second = (run_trial(config, SeedSet.from_base(0)) for _ in range(2))
    assert first.status["code"] == "ok" and first.fingerprints == second.fingerprints
    assert set(first.fingerprints) >= {"weights_sha256", "initial_weights_sha256", "optimizer_sha256"}
    keras.backend.clear_session()
    assert first.model["parameters"] == keras_model.build_model(config, dataset_of(config), 0).count_params()
    # The model's own fit: the optimizer it compiled is the one fingerprinted.
    fitted = run_trial(config.replace(trainer="keras_fit"), SeedSet.from_base(0))
    assert fitted.status["code"] == "ok" and "optimizer_sha256" in fitted.fingerprints
    records = run_conditions(config, "control", 2, user_files / "study")
    assert all(schema_errors(r) == [] for r in records)
    assert len({(r["fingerprints"]["weights_sha256"], r["fingerprints"]["optimizer_sha256"]) for r in records}) == 1
    assert records[0]["model"]["trainable_parameters"] < records[0]["model"]["parameters"]
