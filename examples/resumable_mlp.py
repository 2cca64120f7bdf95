"""Page 1 of the Keras guide, made resumable: Dense, Dropout, Adam, fit, seeded, with BackupAndRestore.

Interrupted and run again, it resumes where its last epoch ended. Does it then end where an uninterrupted run
does? python -m harness.doctor --resume_at=2 examples/resumable_mlp.py measures it.
"""
import keras
import numpy as np

keras.utils.set_random_seed(0)
x = np.random.rand(256, 8).astype("float32")
y = (x.sum(axis=1) > 4).astype("float32")

model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
model.fit(x, y, epochs=4, batch_size=32, verbose=0, callbacks=[keras.callbacks.BackupAndRestore("backup")])
