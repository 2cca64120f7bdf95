"""The second question as its author ran it: an Optuna study of their own objective.

A Keras regression (Dense(units, relu), Dense(1); Adam; MSE) on 100x10 data,
80 rows to train and 20 to validate, 10 epochs; the objective returns the
validation MSE, and Optuna tunes `units` and `learning_rate` under those names.
Nothing in the objective is seeded, as in most tuning scripts, so each trial's
score is one draw of its training noise. Run the study (about a minute), then
ask whether its best trial was luck:

    .venv/bin/python examples/optuna_objective.py
    .venv/bin/python -m harness.reeval --objective=examples/optuna_objective.py:objective \\
        --optuna_storage=sqlite:///results/optuna_objective/study.db --top_k=3

The data come from a fixed seed, so every trial sees the same rows: the
study is about the model and its training, not about which data were drawn.
"""

from pathlib import Path

import keras
import numpy as np
import optuna

STORAGE = "sqlite:///results/optuna_objective/study.db"


def load_data():
    """(x_train, y_train), (x_val, y_val): 100 rows of 10 uniform inputs, targets linear in them plus noise."""
    rng = np.random.default_rng(0)
    x = rng.random((100, 10)).astype("float32")
    y = (x @ rng.normal(size=(10, 1)) + 0.3 * rng.normal(size=(100, 1))).astype("float32")
    return (x[:80], y[:80]), (x[80:], y[80:])


def objective(trial: optuna.Trial) -> float:
    units = trial.suggest_int("units", 8, 128, log=True)
    learning_rate = trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)
    (x_train, y_train), (x_val, y_val) = load_data()
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    model.fit(x_train, y_train, epochs=10, batch_size=16, verbose=0)
    return float(model.evaluate(x_val, y_val, verbose=0))


if __name__ == "__main__":
    Path("results/optuna_objective").mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name="regression", storage=STORAGE, direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=0), load_if_exists=True)
    study.optimize(objective, n_trials=max(0, 20 - len(study.trials)))
    print(f"best trial {study.best_trial.number}: {study.best_params}, validation MSE {study.best_value:.4f}")
