"""Your data: npz, x/y arrays, csv and Python functions are read as a user hands them over."""

import re

import numpy as np
import pytest

from harness.errors import UsageError
from harness.trial.datasets import load_dataset


def test_data_specs_npz_x_y_csv_and_functions(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3)).astype(np.float32), rng.integers(0, 2, 50)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    xy = load_dataset(f"npz:{tmp_path}/xy.npz")
    # x, y alone: a fixed 20% is the test set, the same every time.
    assert (len(xy.train_y), len(xy.test_y), xy.num_classes) == (40, 10, 2)
    assert np.array_equal(load_dataset.__wrapped__(f"npz:{tmp_path}/xy.npz").test_x, xy.test_x)
    rows = ["a,target,b"] + [f"{p},{t},{q}" for (p, q, _), t in zip(x, y, strict=False)]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    table = load_dataset(f"csv:{tmp_path}/table.csv", label_column="target")
    assert table.train_x.shape == (40, 2) and table.num_classes == 2
    with pytest.raises(UsageError, match="has no column 'nope'; its columns are a, target, b"):
        load_dataset(f"csv:{tmp_path}/table.csv", label_column="nope")
    (tmp_path / "loader.py").write_text(
        "import numpy as np\nimport tensorflow as tf\n\n"
        "def datasets():\n"
        "    x = np.arange(40, dtype='float32').reshape(20, 2)\n"
        "    y = (np.arange(20) % 3).astype('int64')\n"
        "    return tf.data.Dataset.from_tensor_slices((x, y)), tf.data.Dataset.from_tensor_slices((x, y)).batch(7)\n")
    loaded = load_dataset(f"{tmp_path}/loader.py:datasets")
    assert loaded.train_x.shape == (20, 2) and loaded.test_x.shape == (20, 2) and loaded.num_classes == 3
    with pytest.raises(UsageError, match="must hold arrays named x_train, y_train, x_test, y_test"):
        np.savez(tmp_path / "bad.npz", images=x)
        load_dataset(f"npz:{tmp_path}/bad.npz")


BATCHED_DATA = """\
import numpy as np
import tensorflow as tf


def load_data():
    data = np.load(__file__.replace("batched.py", "data.npz"))
    train = tf.data.Dataset.from_tensor_slices((data["x_train"], data["y_train"])).batch(64)
    test = tf.data.Dataset.from_tensor_slices((data["x_test"], data["y_test"])).batch(64)
    return train, test
"""


def test_a_batched_tf_data_dataset_is_said_to_be_rebatched(user_files):
    from conftest import run_conditions, user_config

    from harness.analysis.summary import summary_from_records
    from harness.studies.records import schema_errors

    (user_files / "batched.py").write_text(BATCHED_DATA)
    config = user_config(user_files).replace(dataset=f"{user_files}/batched.py:load_data")
    records = run_conditions(config, "control", 1, user_files / "study")
    assert all(schema_errors(r) == [] and r["data"]["source_batch_size"] == 64 for r in records)
    summary = summary_from_records(records, directory=user_files / "study")
    assert summary["rebatched"] == {"source": 64, "trained": config.batch_size} and config.batch_size != 64
    assert (f"Your training tf.data.Dataset comes in batches of 64; the harness read its examples and trained in "
            f"batches of {config.batch_size} (--batch_size) from its own pipeline, so the shuffle seed orders them: "
            "pass --batch_size=64 to train at your dataset's size.") in summary["findings"]
    at_its_size = summary_from_records(run_conditions(config.replace(batch_size=64), "control", 1,
                                                      user_files / "study64"), directory=user_files / "study64")
    assert "rebatched" not in at_its_size


def test_several_inputs_come_as_dicts_tuples_npz_names_and_tf_data_and_keep_their_structure(tmp_path):
    """Inputs as a dict by name or a tuple by position, from npz names `x_train/NAME`, Python data or a tf.data
    dataset: the same structure in the Dataset, split by the same fixed test share; several label arrays (one per
    output) are refused in one sentence."""
    from harness.trial.user_data import from_python

    rng = np.random.default_rng(0)
    image, meta, y = rng.random((50, 4, 4, 1)), rng.random((50, 3)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "named.npz", **{"x_train/image": image[:40], "x_train/meta": meta[:40], "y_train": y[:40],
                                        "x_test/image": image[40:], "x_test/meta": meta[40:], "y_test": y[40:]})
    named = load_dataset(f"npz:{tmp_path}/named.npz")
    assert sorted(named.train_x) == ["image", "meta"] and named.train_x["meta"].shape == (40, 3)
    assert named.several_inputs and not named.is_image
    np.savez(tmp_path / "positional.npz", **{"x/0": image, "x/1": meta, "y": y})
    positional = load_dataset(f"npz:{tmp_path}/positional.npz")
    assert isinstance(positional.train_x, tuple) and positional.train_x[1].shape == (40, 3)
    from_dict = load_dataset(from_python(({"image": image, "meta": meta}, y)))
    assert np.array_equal(from_dict.test_x["meta"], positional.test_x[1])  # one fixed test share for both
    assert from_dict.sha256 != positional.sha256  # inputs by name and by position are other data
    assert load_dataset(from_python([[image, meta], y])).sha256 == positional.sha256
    (tmp_path / "pairs.py").write_text(
        "import numpy as np\nimport tensorflow as tf\n\n"
        "def tuples():\n"
        "    x, m, y = np.ones((20, 2), 'float32'), np.zeros((20, 3), 'float32'), np.arange(20) % 2\n"
        "    return tf.data.Dataset.from_tensor_slices(((x, m), y)).batch(8), "
        "tf.data.Dataset.from_tensor_slices(((x, m), y))\n")
    pairs = load_dataset(f"{tmp_path}/pairs.py:tuples")
    assert [a.shape for a in pairs.train_x] == [(20, 2), (20, 3)] and pairs.source_batch_size == 8
    with pytest.raises(UsageError, match=r"^data: y holds several arrays, one per output; the harness trains and "
                                         r"scores a model with one output"):
        from_python(({"image": image}, (y, y)))
    with pytest.raises(UsageError, match=r"x_train/image has 40 examples but y_train has 39\.$"):
        from_python(({"image": image[:40], "meta": meta[:40]}, y[:39], {"image": image, "meta": meta}, y))


UNSEEDED_DATA = """\
import numpy as np
import tensorflow as tf


def shuffled():
    # As tutorials write it: an unseeded shuffle of the tf.data pipeline, an unseeded NumPy draw.
    x = np.arange(200, dtype="float32").reshape(100, 2) + np.random.rand(100, 2).astype("float32")
    y = np.arange(100) % 3
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(100).batch(10)
    return train, tf.data.Dataset.from_tensor_slices((x[:20], y[:20]))
"""


def test_a_data_function_with_unseeded_randomness_gives_the_same_data_every_time(tmp_path):
    """A data function runs under a fixed seed (part of the data's definition): its unseeded shuffle() and
    np.random draws give the same arrays on every load, and the caller's NumPy generator is not moved."""
    import tensorflow as tf

    from harness.trial.user_data import from_python

    (tmp_path / "unseeded.py").write_text(UNSEEDED_DATA)
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    loads = [load_dataset.__wrapped__(f"{tmp_path}/unseeded.py:shuffled") for _ in range(2)]
    assert np.array_equal(np.random.get_state()[1], before)
    assert loads[0].sha256 == loads[1].sha256 and loads[0].source_batch_size == 10
    # The Python API takes the same: a data function, or the datasets it returns.
    x, y = np.ones((30, 2), "float32"), np.arange(30) % 2
    pair = (tf.data.Dataset.from_tensor_slices((x, y)).batch(5), tf.data.Dataset.from_tensor_slices((x, y)))
    handed = load_dataset(from_python(lambda: pair))
    assert handed.source_batch_size == 5 and handed.train_x.shape == (30, 2)
    assert load_dataset(from_python(pair)).sha256 == handed.sha256


def test_integers_past_32_bits_are_refused_not_wrapped(tmp_path):
    """Labels and integer inputs (token ids) are kept as 32-bit integers: a label of 2**40 became class 0, and
    its trial was "ok". Out of that range, npz, function and CSV data are one sentence naming the value."""
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3)).astype(np.float32), np.arange(50) % 3
    big = np.where(np.arange(50) == 7, 2**40, y)
    np.savez(tmp_path / "label.npz", x_train=x, y_train=big, x_test=x, y_test=y)
    outside = "outside the 32-bit integers the harness trains on (-2147483648 to 2147483647)."
    with pytest.raises(UsageError) as refused:
        load_dataset(f"npz:{tmp_path}/label.npz")
    assert str(refused.value) == f"npz:{tmp_path}/label.npz: y_train holds 1099511627776, {outside}"
    np.savez(tmp_path / "tokens.npz", x_train=big[:, None] - 2**41, y_train=y, x_test=y[:, None], y_test=y)
    with pytest.raises(UsageError) as refused:
        load_dataset(f"npz:{tmp_path}/tokens.npz")
    assert str(refused.value) == f"npz:{tmp_path}/tokens.npz: x_train holds -2199023255552, {outside}"
    rows = ["a,b,c,label"] + [f"{p},{q},{r},{t}" for (p, q, r), t in zip(x, big, strict=True)]
    (tmp_path / "label.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(UsageError) as refused:
        load_dataset(f"csv:{tmp_path}/label.csv")
    assert str(refused.value) == f"{tmp_path}/label.csv: column 'label' holds 1099511627776, {outside}"


def test_data_with_no_features_is_refused(tmp_path):
    """A CSV of its label column alone, or inputs with no values per example, aborted the process in oneDNN."""
    (tmp_path / "labels.csv").write_text("label\n" + "".join(f"{i % 3}\n" for i in range(50)))
    with pytest.raises(UsageError) as refused:
        load_dataset(f"csv:{tmp_path}/labels.csv")
    assert str(refused.value) == (f"{tmp_path}/labels.csv has no column but its label column 'label'; a model "
                                  "needs at least one column of features.")
    y = np.arange(50) % 3
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((50, 4, 0)), y_train=y, x_test=np.zeros((50, 4, 0)), y_test=y)
    with pytest.raises(UsageError) as refused:
        load_dataset(f"npz:{tmp_path}/empty.npz")
    assert str(refused.value) == (f"npz:{tmp_path}/empty.npz: x_train's examples have shape (4, 0), no values "
                                  "for a model to learn from.")


# A data function returning more than memory holds: broadcast views, which cost no memory until copied (1 PiB
# as float32: past any machine's address space, so no allocation of it can succeed, whatever the overcommit).
HUGE_DATA = """\
import numpy as np


def huge():
    x = np.broadcast_to(np.float64(0), (2**16, 2**16, 2**16))
    return x, np.zeros(2**16, "int32"), x[:8], np.zeros(8, "int32")
"""


def test_data_that_does_not_fit_in_memory_is_one_sentence(tmp_path, monkeypatch):
    """Data too large for the memory available is refused before the harness copies it (as float32), in one
    sentence; where the memory available is unknown, the failed copy (numpy's MemoryError) is that sentence."""
    from harness.trial import user_data

    (tmp_path / "huge.py").write_text(HUGE_DATA)
    spec = f"{tmp_path}/huge.py:huge"
    subset = r"; study a subset of it, saved as its own npz file\.$"
    with pytest.raises(UsageError, match=(rf"^{re.escape(spec)} takes 1048704\.0 GiB in memory and a trial holds "
                                          rf"about 3 copies, more than the [\d.]+ GiB available here{subset}")):
        load_dataset.__wrapped__(spec)
    monkeypatch.setattr(user_data, "_available_memory", lambda: None)
    with pytest.raises(UsageError, match=(rf"^{re.escape(spec)} does not fit in memory here \(Unable to allocate "
                                          r"1\.00 PiB for an array with shape \(65536, 65536, 65536\) and data type "
                                          rf"float32\){subset}")):
        load_dataset.__wrapped__(spec)


def test_a_negative_class_label_for_a_built_in_model_is_refused_before_training(tmp_path):
    """Integer labels name max + 1 classes; one below 0 failed every trial of a built-in model in its loss
    (`indices[1] = -1 is not in [0, 10)`). Your own model's loss is checked as its task is read
    (test_keras_model)."""
    from harness.trial.config import load_benchmark
    from harness.trial.seeds import SeedSet
    from harness.trial.train import run_trial

    digits = load_dataset("digits")
    y = np.where(np.arange(400) == 5, -1, digits.train_y[:400])
    np.savez(tmp_path / "negative.npz", x_train=digits.train_x[:400], y_train=y, x_test=digits.test_x[:100],
             y_test=digits.test_y[:100])
    config = load_benchmark("digits_mlp", epochs=1).replace(dataset=f"npz:{tmp_path}/negative.npz")
    with pytest.raises(UsageError) as refused:
        run_trial(config, SeedSet.from_base(0))
    assert str(refused.value) == (f"the built-in mlp model takes class labels 0 to 9, and the labels of "
                                  f"npz:{tmp_path}/negative.npz include -1.")


WEIGHTED_SOURCES = """\
import numpy as np
import tensorflow as tf

DATA = np.load(__file__.replace("weighted.py", "weighted.npz"))


def arrays():
    return DATA["x"], DATA["y"], DATA["w"]


def splits():
    return (DATA["x"][:40], DATA["y"][:40], DATA["w"][:40]), (DATA["x"][40:], DATA["y"][40:])


def datasets():
    train = tf.data.Dataset.from_tensor_slices((DATA["x"][:40], DATA["y"][:40], DATA["w"][:40])).batch(8)
    test = tf.data.Dataset.from_tensor_slices((DATA["x"][40:], DATA["y"][40:]))
    return train, test
"""


def test_sample_weights_come_from_every_source_and_are_part_of_the_data_s_identity(tmp_path):
    """npz `w_train`/`w`, a data function's (x, y, w), a tf.data.Dataset of (x, y, w) and the Python API's
    arrays: the same weights arrive with the same examples, and they change the data's hash."""
    from harness.trial import user_data

    rng = np.random.default_rng(0)
    x, y = rng.random((50, 3)).astype(np.float32), rng.integers(0, 2, 50)
    w = rng.uniform(0.5, 2.0, 50).astype(np.float32)
    np.savez(tmp_path / "weighted.npz", x=x, y=y, w=w)
    np.savez(tmp_path / "four.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:], w_train=w[:40])
    np.savez(tmp_path / "plain.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    (tmp_path / "weighted.py").write_text(WEIGHTED_SOURCES)

    held_out = load_dataset(f"npz:{tmp_path}/weighted.npz")
    function = load_dataset(f"{tmp_path}/weighted.py:arrays")
    python = load_dataset(user_data.from_python((x, y, w)))
    for loaded in (function, python):
        assert np.array_equal(loaded.train_w, held_out.train_w) and np.array_equal(loaded.test_w, held_out.test_w)
        assert np.array_equal(loaded.train_x, held_out.train_x)
    # The held-out split moves each weight with its example.
    assert sorted(held_out.train_w.tolist() + held_out.test_w.tolist()) == sorted(w.tolist())

    four, plain = load_dataset(f"npz:{tmp_path}/four.npz"), load_dataset(f"npz:{tmp_path}/plain.npz")
    python_dict = user_data.from_python({"x_train": x[:40], "y_train": y[:40], "x_test": x[40:], "y_test": y[40:],
                                         "w_train": w[:40]})
    for loaded in (four, load_dataset(f"{tmp_path}/weighted.py:splits"),
                   load_dataset(f"{tmp_path}/weighted.py:datasets"), load_dataset(python_dict)):
        assert np.array_equal(loaded.train_w, w[:40]) and loaded.test_w is None
    assert plain.train_w is None
    assert four.sha256 != plain.sha256
    # Unweighted data keeps the hash it had before weights existed: the four arrays' alone.
    from harness.trial.fingerprints import named_arrays_sha256

    assert plain.sha256 == named_arrays_sha256([("train_x", x[:40]), ("train_y", y[:40].astype(np.int32)),
                                                ("test_x", x[40:]), ("test_y", y[40:].astype(np.int32))])


@pytest.mark.parametrize(("weights", "sentence"), [
    (np.ones(39), "w_train holds 39 sample weights but y_train has 40 examples."),
    (-np.ones(40), "w_train holds a negative sample weight (-1); weights are 0 or more."),
    (np.zeros(40), "every sample weight of w_train is 0; the model would learn nothing."),
    (np.ones((40, 2)), "w_train must hold one sample weight per example (shape (n,)), not shape (40, 2)."),
    (np.full(40, np.nan), "w_train holds NaN or infinite values."),
])
def test_unusable_sample_weights_are_one_sentence(tmp_path, weights, sentence):
    x, y = np.zeros((50, 3), np.float32), np.arange(50) % 2
    np.savez(tmp_path / "bad.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:], w_train=weights)
    with pytest.raises(UsageError) as refused:
        load_dataset.__wrapped__(f"npz:{tmp_path}/bad.npz")
    assert str(refused.value) == f"npz:{tmp_path}/bad.npz: {sentence}"
