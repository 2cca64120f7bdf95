"""The original question: MNIST, Dense128-relu, Dropout(0.8), Dense10, Adam, batch 32, 50 epochs.

Needs the TFDS `mnist` data prepared under `--data_dir` (or TFDS's default
directory); run `tfds build mnist` once on a machine with network access.
"""


def get_config() -> dict:
    return dict(
        dataset="tfds:mnist",
        model="mlp",
        hidden_units=128,
        dropout_rate=0.8,
        epochs=50,
        batch_size=32,
        learning_rate=1e-3,
        steps_per_loop=200,
    )
