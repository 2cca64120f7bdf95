"""Keras models and data as users write them, one per kind the harness must train exactly as written
(test_model_corpus.py; docs/your-own-model.md lists what each shows). Nothing here is seeded: the harness
decides every seed. Data: the first 400 training and 200 test digits, as images, several inputs or tokens.
"""

import keras
import numpy as np
import tensorflow as tf

from harness.trial.datasets import load_dataset

TRAIN, TEST = 400, 200


def _digits():
    digits = load_dataset("digits")
    return digits.train_x[:TRAIN], digits.train_y[:TRAIN], digits.test_x[:TEST], digits.test_y[:TEST]


def _compiled(model, loss=None):
    model.compile(optimizer="adam", loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


# --- data --------------------------------------------------------------------------------------------------

def images():
    return _digits()


def _two_inputs(x):
    # A second input a model takes beside the image: each row's mean brightness.
    return {"image": x, "row_means": x.mean(axis=2)[..., 0]}


def image_and_row_means():
    x_train, y_train, x_test, y_test = _digits()
    return _two_inputs(x_train), y_train, _two_inputs(x_test), y_test


def tokens():
    # Each digit as a sequence of 16 intensities 0..16 (its 2x2 blocks' means): tokens for an Embedding.
    x_train, y_train, x_test, y_test = _digits()
    as_tokens = lambda x: np.rint(x.reshape(len(x), 4, 2, 4, 2).mean(axis=(2, 4)).reshape(len(x), 16) * 16).astype(np.int32)  # noqa: E731,E501
    return as_tokens(x_train), y_train, as_tokens(x_test), y_test


def tf_data_dict_features():
    x_train, y_train, x_test, y_test = _digits()
    train = tf.data.Dataset.from_tensor_slices((_two_inputs(x_train), y_train)).batch(32)
    test = tf.data.Dataset.from_tensor_slices((_two_inputs(x_test), y_test)).batch(32)
    return train, test


def images_even_or_odd():
    # 0/1 labels of shape (n,): is the digit odd?
    x_train, y_train, x_test, y_test = _digits()
    return x_train, y_train % 2, x_test, y_test % 2


def two_label_sets():
    x_train, y_train, x_test, y_test = _digits()
    return x_train, (y_train, y_train % 2), x_test, (y_test, y_test % 2)


# --- models ------------------------------------------------------------------------------------------------

def cnn_batchnorm_noise():
    return _compiled(keras.Sequential([
        keras.layers.Conv2D(8, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GaussianNoise(0.1),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ]))


def augmentation_layers():
    return _compiled(keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomTranslation(0.1, 0.1),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10),
    ]))


def binary_sigmoid():
    # The most common binary classifier: one sigmoid unit, the loss named by its string, labels of shape (n,).
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def two_inputs():
    image = keras.Input((8, 8, 1), name="image")
    row_means = keras.Input((8,), name="row_means")
    features = keras.layers.Concatenate()([keras.layers.Flatten()(image), row_means])
    hidden = keras.layers.Dropout(0.3)(keras.layers.Dense(32, activation="relu")(features))
    return _compiled(keras.Model({"image": image, "row_means": row_means}, keras.layers.Dense(10)(hidden)))


def two_outputs():
    image = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(32, activation="relu")(keras.layers.Flatten()(image))
    digit, parity = keras.layers.Dense(10, name="digit")(hidden), keras.layers.Dense(2, name="parity")(hidden)
    model = keras.Model(image, {"digit": digit, "parity": parity})
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss={"digit": loss, "parity": loss})
    return model


class HeadOnly(keras.Model):
    """Fine-tuning as often written: clipped gradients, only the head trains."""

    def __init__(self):
        super().__init__()
        self.body = keras.layers.Dense(32, activation="relu")
        self.drop = keras.layers.Dropout(0.3)
        self.head = keras.layers.Dense(10)

    def call(self, x, training=False):
        return self.head(self.drop(self.body(keras.ops.reshape(x, (-1, 64))), training=training))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        head = self.head.trainable_variables
        gradients = [tf.clip_by_norm(g, 1.0) for g in tape.gradient(loss, head)]
        self.optimizer.apply_gradients(zip(gradients, head, strict=True))
        return {"loss": loss}


def custom_train_step():
    return _compiled(HeadOnly())


class ActivityPenalty(keras.layers.Layer):
    def call(self, x):
        self.add_loss(1e-2 * keras.ops.mean(keras.ops.square(x)))
        return x


def add_loss_regularizer():
    return _compiled(keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-3)),
        ActivityPenalty(),
        keras.layers.Dense(10),
    ]))


def embedding_gru():
    return _compiled(keras.Sequential([
        keras.layers.Embedding(17, 8),
        keras.layers.GRU(16),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ]))


def spatial_and_alpha_dropout():
    return _compiled(keras.Sequential([
        keras.layers.Conv2D(8, 3, padding="same", activation="selu"),
        keras.layers.SpatialDropout2D(0.2),
        keras.layers.Flatten(),
        keras.layers.AlphaDropout(0.1),
        keras.layers.Dense(10),
    ]))


class NoisyDense(keras.layers.Layer):
    """Noise drawn in `call` with keras.ops random calls, from the layer's own SeedGenerator."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(units)
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, x, training=False):
        out = self.dense(x)
        if training:
            out = out + 0.1 * keras.random.normal(keras.ops.shape(out), seed=self.seed_generator)
        return out


def ops_random_in_call():
    return _compiled(keras.Sequential([keras.layers.Flatten(), NoisyDense(32), keras.layers.ReLU(),
                                       keras.layers.Dense(10)]))


class UnseededNoise(keras.layers.Layer):
    """Noise from keras.random with no seed: Keras's global SeedGenerator, held by no layer."""

    def call(self, x, training=False):
        return x + 0.1 * keras.random.normal(keras.ops.shape(x)) if training else x


def unseeded_ops_random_in_call():
    return _compiled(keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                                       UnseededNoise(), keras.layers.Dense(10)]))
