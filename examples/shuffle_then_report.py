"""Mixing the classes by hand before fitting, then reporting the validation loss: two mistakes at once.

Nothing is seeded, and `random.shuffle` decides the order of the rows; the last line reads a metric the fit
never logs (no validation data). python -m harness.doctor names both causes of the differing runs, and says
where the script failed after its fit.
"""
import random

import numpy as np
from tensorflow import keras

rng = np.random.default_rng(0)
x = rng.random((256, 10)).astype("float32")
y = (x.sum(axis=1) > 5).astype("int32")

order = list(range(len(x)))
random.shuffle(order)  # mix the classes
x, y = x[order], y[order]

model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
history = model.fit(x, y, epochs=5, batch_size=32, shuffle=False, verbose=0)
print("final validation loss:", history.history["val_loss"][-1])
