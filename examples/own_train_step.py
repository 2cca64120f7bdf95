"""A model with its own train step, as fine-tuning code often has one: the examples' MLP with each gradient
clipped to norm 1. The harness trains it with its own Keras fit (its `train_step` runs), never with the
harness's step; `make speed` times it in its own row. Study it with:

    .venv/bin/python -m harness.bench --model=examples/own_train_step.py:create_model \\
        --data=examples/mnist_mlp.py:load_data --epochs=20
"""

import keras
import tensorflow as tf


class ClippedMLP(keras.Model):
    def __init__(self, units: int = 128, dropout: float = 0.8):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.dropout = keras.layers.Dropout(dropout)
        self.out = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.out(self.dropout(self.hidden(self.flatten(x)), training=training))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        gradients = [tf.clip_by_norm(g, 1.0) for g in tape.gradient(loss, self.trainable_variables)]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables, strict=True))
        return {"loss": loss}


def create_model(units: int = 128, dropout: float = 0.8) -> keras.Model:
    model = ClippedMLP(units, dropout)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
