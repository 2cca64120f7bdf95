"""A small CNN on CIFAR-10: cuDNN convolution forward and backprop on a GPU.

Without op determinism, cuDNN's algorithm choice and its backprop kernels make
repeated runs differ on a GPU. Needs TFDS `cifar10` prepared under `--data_dir`.
"""


def get_config() -> dict:
    return dict(
        dataset="tfds:cifar10",
        model="cnn",
        hidden_units=128,
        dropout_rate=0.25,
        epochs=10,
        batch_size=64,
        learning_rate=1e-3,
        augment=True,
        steps_per_loop=100,
    )
