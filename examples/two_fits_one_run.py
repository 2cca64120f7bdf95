"""The Optuna question's third example: the same model trained twice in one run ends at two losses.

Is Adam to blame? python -m harness.doctor measures it.
"""
import numpy as np
import tensorflow as tf
from tensorflow import keras

np.random.seed(42)
X = np.random.rand(100, 10)
y = np.random.rand(100, 1)


def create_model(seed):
    tf.random.set_seed(seed)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    return model


first = create_model(seed=42)
loss_a = first.fit(X, y, epochs=10, batch_size=32, verbose=0).history["loss"][-1]
second = create_model(seed=42)
loss_b = second.fit(X, y, epochs=10, batch_size=32, verbose=0).history["loss"][-1]
print(f"first fit {loss_a:.5f}, second fit {loss_b:.5f}")
