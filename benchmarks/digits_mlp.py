"""The embedded default: the original question's MLP on the 8x8 digits shipped in the package.

Small enough that a study of many trials runs in minutes on two CPU cores, with
no network. A held-out validation share gives the `split` seed something to do.
"""


def get_config() -> dict:
    return dict(
        dataset="digits",
        model="mlp",
        hidden_units=128,
        dropout_rate=0.8,
        epochs=20,
        batch_size=32,
        learning_rate=1e-3,
        validation_fraction=0.1,
        augment=True,
        steps_per_loop=41,
    )
