"""The second question: a `create_model(seed)` whose hyperparameters came from an Optuna study.

    Sequential([Dense(64, relu) on 10 inputs, Dense(1)]), Adam, MSE, 100x10 random data, 10 epochs

The function seeds TensorFlow itself, as the question's author did, and
believes that makes runs repeat. It does not reach Keras 3's initializers; the
harness seeds what matters around the call (the init seed) and passes its init
seed as `seed`. Study it with the hyperparameters as Optuna's `best_params`
hands them over:

    .venv/bin/python -m harness.bench --model=examples/optuna_regression.py:create_model \\
        --model_args="$(cat examples/optuna_best_params.json)" \\
        --data=examples/optuna_regression.py:load_data --epochs=10 --conditions=control,init,shuffle,all
"""

import keras
import numpy as np
import tensorflow as tf


def create_model(seed: int, units: int = 64, learning_rate: float = 0.001) -> keras.Model:
    tf.random.set_seed(seed)
    model = keras.Sequential([
        keras.Input((10,)),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def load_data():
    """100x10 uniform inputs, targets linear in them plus noise (and 100 more for testing), from a fixed seed."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(10, 1))
    x = rng.random((200, 10)).astype("float32")
    y = (x @ weights + 0.1 * rng.normal(size=(200, 1))).astype("float32")
    return (x[:100], y[:100]), (x[100:], y[100:])


if __name__ == "__main__":
    # What the user ran: the tuned model, "seeded" the way the question's author seeded it, twice.
    (x_train, y_train), (x_test, y_test) = load_data()
    for run in range(2):
        model = create_model(seed=42, units=64, learning_rate=0.01)
        model.fit(x_train, y_train, batch_size=32, epochs=10, verbose=0)
        print(f"run {run}: test mse {model.evaluate(x_test, y_test, verbose=0):.4f}")
