"""The original question's model, written the way its users write it: no seeds anywhere.

    keras.Sequential([Flatten, Dense(128, relu), Dropout(0.8), Dense(10)]), Adam, batch 32

`load_data()` reads the 8x8 handwritten digits (1,797 images, UCI; the copy
shipped inside the harness package) with gzip and NumPy, as a user's script
reads its CSV, so the example runs offline. Study it with:

    .venv/bin/python -m harness.bench --model=examples/mnist_mlp.py:create_model \\
        --data=examples/mnist_mlp.py:load_data --epochs=20 --batch_size=32
"""

import gzip
from pathlib import Path

import keras
import numpy as np

DIGITS = Path(__file__).resolve().parents[1] / "harness" / "data" / "digits.csv.gz"


def create_model(units: int = 128, dropout: float = 0.8, learning_rate: float = 0.001) -> keras.Model:
    # No Input layer: the model takes the shape of whatever data it first sees (8x8 digits here,
    # 28x28 images in `make speed`).
    model = keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def load_data():
    """(x_train, y_train), (x_test, y_test): the last 360 images are the test set."""
    table = np.loadtxt(gzip.open(DIGITS, "rt"), delimiter=",", dtype=np.int64)
    x = (table[:, :64] / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    y = table[:, 64].astype("int32")
    return (x[:-360], y[:-360]), (x[-360:], y[-360:])


if __name__ == "__main__":
    # What the user ran before: two "identical" runs that end at different accuracies.
    (x_train, y_train), (x_test, y_test) = load_data()
    for run in range(2):
        model = create_model()
        model.fit(x_train, y_train, batch_size=32, epochs=20, verbose=0)
        print(f"run {run}: test accuracy {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}")
