"""The second question: Dense64-relu, Dense1 with MSE on 100x10 random data, 10 epochs."""


def get_config() -> dict:
    return dict(
        dataset="random_regression",
        model="regression",
        hidden_units=64,
        dropout_rate=0.0,
        epochs=10,
        batch_size=32,
        learning_rate=1e-3,
        steps_per_loop=4,
    )
