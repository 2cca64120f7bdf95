"""The default study: MNIST-1D (Greydanus 2020), generated offline from a seed, with the built-in MLP.

A test set of 100,000 examples (the digits have 360): the test set's noise floor (0.16 points) lies
below the 0.2-0.5 points each seed moves test accuracy, and churn is measured on enough examples to
show a flipped bit. 4,000 training examples keep a trial near a second.
"""


def get_config() -> dict:
    return dict(
        dataset="mnist1d",
        model="mlp",
        hidden_units=128,
        dropout_rate=0.2,
        epochs=10,
        batch_size=32,
        learning_rate=3e-3,
        validation_fraction=0.1,
        augment=False,
        steps_per_loop=56,
    )
