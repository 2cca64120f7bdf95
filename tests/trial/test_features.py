"""Several inputs keep their structure: a dict or tuple of arrays is split, batched and hashed like one array."""

import numpy as np

from harness.trial import features
from harness.trial.datasets import training_batches
from harness.trial.seeds import SeedSet


def test_a_dict_of_inputs_gets_the_batches_one_array_gets_in_the_same_order():
    image = np.arange(40, dtype=np.float32).reshape(10, 2, 2)
    meta = np.arange(10, dtype=np.float32)[:, None] * 10
    labels = np.arange(10, dtype=np.int32)
    seeds = SeedSet.from_base(3)
    one = [(x, y) for x, y in training_batches(image, labels, seeds, batch_size=4, epochs=2, augment=False)
           .as_numpy_iterator()]
    several = list(training_batches({"meta": meta, "image": image}, labels, seeds, batch_size=4, epochs=2,
                                    augment=False).as_numpy_iterator())
    assert len(one) == len(several) == 6
    for (x, y), (inputs, labels_too) in zip(one, several, strict=True):
        assert sorted(inputs) == ["image", "meta"]
        assert np.array_equal(inputs["image"], x) and np.array_equal(labels_too, y)
        assert np.array_equal(inputs["meta"][:, 0], y * 10)  # each example's inputs stay together


def test_forms_are_told_apart_as_keras_tells_them():
    rows = [[1.0, 2.0], [3.0, 4.0]]
    assert not features.is_several(rows) and not features.is_several(np.ones((2, 2)))
    assert features.is_several([np.ones(2), np.ones(2)]) and features.is_several({"a": rows})
    pair = features.normalized([np.ones((3, 2)), np.zeros((3, 4))], lambda a, name: a)
    assert isinstance(pair, tuple) and features.example_shapes(pair) == [[2], [4]]
    assert features.example_shapes({"b": np.ones((3, 1)), "a": np.ones((3, 5))}) == {"a": [5], "b": [1]}
    assert [name for name, _ in features.named(pair, "train_x")] == ["train_x/0", "train_x/1"]
    assert features.named(np.ones(3), "train_x")[0][0] == "train_x"
    assert features.count(features.take(pair, slice(0, 2))) == 2
