"""Embedding lookup + segment-sum pooling + dense, on the embedded digits.

On a GPU without op determinism, the gather backprop (an unsorted segment sum
of the embedding gradient) and the segment-sum pooling use atomics, so repeated
runs differ. Pixels become tokens: (position, quantized intensity).
"""


def get_config() -> dict:
    return dict(
        dataset="digits",
        model="embedding",
        hidden_units=64,
        dropout_rate=0.0,
        epochs=20,
        batch_size=32,
        learning_rate=3e-3,
        validation_fraction=0.1,
        steps_per_loop=41,
    )
