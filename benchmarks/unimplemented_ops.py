"""Ops with no deterministic GPU kernel: what a study does when op determinism cannot be had.

The first layer is a sparse-dense matmul (`SparseTensorDenseMatMul`), which on a
GPU with op determinism on raises UnimplementedError (docs/references.md, "TensorFlow determinism": still
raising in TF 2.21). A study records those trials as failed with status
`nondeterministic_op` naming the op, and runs the rest: `kernels` and `all`
(op determinism off) still train. On CPU the kernel is deterministic and every
trial trains.
"""


def get_config() -> dict:
    return dict(
        dataset="digits",
        model="sparse",
        hidden_units=128,
        dropout_rate=0.5,
        epochs=10,
        batch_size=32,
        learning_rate=1e-3,
        steps_per_loop=45,
    )
