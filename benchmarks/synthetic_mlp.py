"""The original question's MLP on MNIST-shaped synthetic data (60,000 x 784): speed runs offline."""


def get_config() -> dict:
    return dict(
        dataset="synthetic",
        model="mlp",
        hidden_units=128,
        dropout_rate=0.8,
        epochs=2,
        batch_size=32,
        learning_rate=1e-3,
        steps_per_loop=200,
    )
