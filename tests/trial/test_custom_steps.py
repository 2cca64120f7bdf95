"""A Keras model with its own train step trains as written: its own Keras fit runs it, never the harness's
step in silence, and the record, the summary and the grouping decision say so. Loss terms a model adds
(`add_loss`) count in the harness's own step."""

import pytest
from conftest import run_conditions, user_config

from harness.analysis.summary import format_summary, summary_from_records
from harness.errors import UsageError
from harness.studies.records import schema_errors
from harness.trial import grouped
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial, trainer_of

MODELS = """\
import keras
import tensorflow as tf


class HeadOnly(keras.Model):
    # Fine-tuning as users write it: clipped gradients, only the head trains.
    def __init__(self, train_head=True):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.body = keras.layers.Dense(32, activation="relu")
        self.head = keras.layers.Dense(10)
        self.train_head = train_head

    def call(self, x, training=False):
        return self.head(self.body(self.flatten(x)))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        if self.train_head:
            variables = self.head.trainable_variables
            gradients = [tf.clip_by_norm(g, 0.1) for g in tape.gradient(loss, variables)]
            self.optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": loss}


class Penalized(keras.Model):
    # Its own loss: cross-entropy plus an L2 penalty on the logits.
    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.head = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.head(self.flatten(x))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        return loss + 1e-3 * tf.reduce_mean(tf.square(y_pred))


class AddsLoss(keras.layers.Layer):
    def call(self, x):
        self.add_loss(100.0 + 0.0 * tf.reduce_sum(x))
        return x


def _compiled(model):
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def head_only():
    return _compiled(HeadOnly())


def frozen():
    return _compiled(HeadOnly(train_head=False))


def penalized():
    return _compiled(Penalized())


def adds_loss():
    return _compiled(keras.Sequential([keras.layers.Flatten(), AddsLoss(), keras.layers.Dense(10)]))
"""


@pytest.fixture
def custom_files(user_files):
    (user_files / "model.py").write_text(MODELS)
    return user_files


def test_a_model_with_its_own_train_step_trains_with_it(custom_files):
    # A step that updates nothing: the weights end where they began, which the harness's step would not do.
    frozen = run_trial(user_config(custom_files, "frozen"), SeedSet.from_base(0))
    assert frozen.status["code"] == "ok"
    assert frozen.model["trainer"] == "keras_fit" and frozen.model["trainer_reason"] == "its own train_step"
    assert frozen.model["custom_steps"] == ["train_step"]
    assert frozen.fingerprints["weights_sha256"] == frozen.fingerprints["initial_weights_sha256"]
    # The fine-tuning step: the same bits as asking for the model's own fit outright.
    config = user_config(custom_files, "head_only")
    auto = run_trial(config, SeedSet.from_base(0))
    asked = run_trial(config.replace(trainer="keras_fit"), SeedSet.from_base(0))
    assert auto.fingerprints == asked.fingerprints and auto.metrics == asked.metrics
    assert auto.fingerprints["weights_sha256"] != auto.fingerprints["initial_weights_sha256"]
    assert "trainer_reason" not in asked.model  # asked for: nothing to explain
    assert trainer_of(config) == ("keras_fit", "its own train_step")
    assert trainer_of(user_config(custom_files, "penalized")) == ("keras_fit", "its own compute_loss")
    assert trainer_of(user_config(custom_files, "adds_loss")) == ("harness", None)


def test_a_study_says_which_loop_trained_and_does_not_group(custom_files):
    config = user_config(custom_files, "head_only")
    assert grouped.why_not(config) == (f"{config.model} has its own train_step, which trains in its own Keras fit, "
                                       "one model at a time")
    records = run_conditions(config, "control", 2, custom_files / "study")
    assert all(schema_errors(r) == [] and r["model"]["trainer_reason"] == "its own train_step" for r in records)
    assert len({r["fingerprints"]["weights_sha256"] for r in records}) == 1
    summary = summary_from_records(records, directory=custom_files / "study")
    assert summary["trainer"] == {"name": "keras_fit", "reason": "its own train_step"}
    assert schema_errors(summary) == []
    header = next(line for line in format_summary(summary).splitlines() if line.startswith(summary["benchmark"]))
    assert header.endswith(", trained by the model's own Keras fit (its own train_step)")


def test_what_only_the_harness_step_can_do_is_refused_for_a_model_with_its_own(custom_files):
    config = user_config(custom_files, "head_only")
    with pytest.raises(UsageError) as refused:
        run_trial(config.replace(reduction_order=1, dropout_rate=0.0), SeedSet.from_base(0))
    assert str(refused.value) == (f"the `order` condition permutes each batch inside the harness's step; "
                                  f"{config.model} has its own train_step, which only its own Keras fit runs: "
                                  "leave `order` out for this model")


def test_loss_terms_a_model_adds_count_in_the_harness_step_and_not_in_its_test_loss(custom_files):
    result = run_trial(user_config(custom_files, "adds_loss"), SeedSet.from_base(0))
    assert "trainer" not in result.model and result.model["custom_steps"] == []
    assert result.metrics["train_loss"] > 100  # the cross-entropy alone is a few units
    # Evaluation scores the task's loss alone (a loss term added in training is not in the test loss).
    assert result.metrics["test_loss"] < 100
