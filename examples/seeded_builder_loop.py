"""The Optuna question's first example: create_model(seed) seeds TensorFlow, the data are random.

Run twice, it prints other losses each time. python -m harness.doctor says why.
"""
import numpy as np
import tensorflow as tf
from tensorflow import keras


def create_model(seed):
    tf.random.set_seed(seed)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    return model


X = np.random.rand(100, 10)
y = np.random.rand(100, 1)

for run in range(2):
    model = create_model(seed=42)
    history = model.fit(X, y, epochs=10, batch_size=32, verbose=0)
    print(f"run {run}: final loss {history.history['loss'][-1]:.5f}")
