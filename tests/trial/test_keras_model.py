"""Your Keras model in the harness loop: every seed keeps its meaning, control repeats, the update's XLA switch."""

import pytest
from conftest import run_conditions, run_program, user_config

from harness.errors import UsageError
from harness.studies.records import read_records, schema_errors
from harness.trial import keras_model
from harness.trial.config import TrialConfig
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial


@pytest.mark.slow
def test_each_seed_keeps_its_meaning_for_a_user_model(user_files):
    records = run_conditions(user_config(user_files), "control,init,dropout", 2, user_files / "study")
    assert all(schema_errors(r) == [] for r in records)
    assert all(r["status"]["code"] == "ok" for r in records)
    by = {name: [r["fingerprints"] for r in records if r["condition"] == name]
          for name in ("control", "init", "dropout")}
    control_initial = by["control"][0]["initial_weights_sha256"]
    # dropout: the masks change, and nothing else: the initial weights stay control's.
    assert {f["initial_weights_sha256"] for f in by["dropout"]} == {control_initial}
    assert len({f["weights_sha256"] for f in by["dropout"]}) == 2
    # init: another init seed, other initial weights.
    assert len({f["initial_weights_sha256"] for f in by["init"]}) == 2
    # control: identical runs in one process give one final hash.
    assert len({f["weights_sha256"] for f in by["control"]}) == 1


@pytest.mark.slow
def test_control_gives_one_hash_across_fresh_processes_and_this_one(user_files):
    args = [f"--model={user_files}/model.py:create_model", f"--data=npz:{user_files}/data.npz", "--epochs=2",
            "--steps_per_loop=5", "--conditions=control", "--repeats=1"]
    fingerprints = []
    for run in ("a", "b"):
        result = run_program("harness.bench", *args, f"--output_dir={user_files / run}")
        assert result.returncode == 0, result.stderr
        (record,) = read_records(user_files / run / "trials.jsonl")
        assert schema_errors(record) == []
        fingerprints.append(record["fingerprints"])
    assert fingerprints[0] == fingerprints[1]
    # This long-lived process has built other Keras models already: still the same bits.
    here = run_trial(user_config(user_files), SeedSet.from_base(0))
    assert here.fingerprints == fingerprints[0]
    changed_seed = run_trial(user_config(user_files), SeedSet.from_base(0).replace(init=1))
    assert changed_seed.fingerprints["weights_sha256"] != fingerprints[0]["weights_sha256"]


@pytest.mark.slow
def test_the_update_is_xla_compiled_on_request_and_from_a_size(user_files):
    op_by_op = run_trial(user_config(user_files), SeedSet.from_base(0))  # 2,410 parameters: auto leaves it
    fused = run_trial(user_config(user_files, xla_update="on"), SeedSet.from_base(0))
    assert op_by_op.status["code"] == fused.status["code"] == "ok"
    assert (op_by_op.model["update"], fused.model["update"]) == ("op by op", "xla")
    # The same start, other arithmetic: XLA's fused kernels round differently from Keras's ops one by one.
    assert fused.fingerprints["initial_weights_sha256"] == op_by_op.fingerprints["initial_weights_sha256"]
    assert fused.fingerprints["weights_sha256"] != op_by_op.fingerprints["weights_sha256"]
    assert run_trial(user_config(user_files, xla_update="on"), SeedSet.from_base(0)).fingerprints == fused.fingerprints
    # auto compiles it from keras_model.XLA_UPDATE_MIN_PARAMETERS (64 * 1024 + 1024 + 1024 * 10 + 10 here).
    big = run_trial(user_config(user_files, model_args={"units": 1024}, epochs=1), SeedSet.from_base(0))
    assert big.model["parameters"] > keras_model.XLA_UPDATE_MIN_PARAMETERS and big.model["update"] == "xla"
    assert run_trial(user_config(user_files, xla=True, epochs=1), SeedSet.from_base(0)).model["update"] == "in the step"
    with pytest.raises(UsageError, match=r"^--model_args, --optimizer, --loss and --xla_update are for your own "
                       r"Keras model, not the built-in 'mlp'\.$"):
        TrialConfig("mlp_digits", xla_update="on")
    with pytest.raises(UsageError, match=r"^unknown --xla_update 'yes'; choose one of auto, on, off\.$"):
        user_config(user_files, xla_update="yes")


def test_an_optimizer_xla_cannot_compile_is_told_to_run_op_by_op(user_files):
    failed = run_trial(user_config(user_files, "host_optimizer", xla_update="on"), SeedSet.from_base(0))
    assert failed.status["code"] == "error"
    assert failed.status["message"].startswith("InvalidArgumentError: Detected unsupported operations")
    assert failed.status["message"].endswith(
        "; your optimizer's update was compiled with XLA: --xla_update=off runs it op by op")
    assert run_trial(user_config(user_files, "host_optimizer"), SeedSet.from_base(0)).status["code"] == "ok"


def test_a_model_that_cannot_take_the_data_says_so_with_keras_s_reason(user_files):
    """The sentence ends with what Keras said was wrong, not with the line Keras wraps it in ("Exception
    encountered when calling Sequential.call()") nor the input tensor's printed values."""
    with pytest.raises(UsageError) as unbuilt:
        run_trial(user_config(user_files, "wrong_input"), SeedSet.from_base(0))
    assert str(unbuilt.value) == (
        f"{user_files}/model.py:wrong_input returned a model that cannot be built on "
        "the data's examples of shape (8, 8, 1): The total size of the tensor must be unchanged. Received: "
        "input_shape=(8, 8, 1), target_shape=(5, 5).")
    with pytest.raises(UsageError) as built:
        run_trial(user_config(user_files, "expects_ten_inputs"), SeedSet.from_base(0))
    assert str(built.value) == (
        f"{user_files}/model.py:expects_ten_inputs returned a model that fails on the data's "
        "examples of shape (8, 8, 1): Invalid input shape for input (an array) with name 'keras_tensor' and path ''. "
        "Expected shape (None, 10), but input has incompatible shape (2, 8, 8, 1).")


def test_labels_a_classifier_cannot_take_are_refused_before_training_and_float_classes_are_classes(user_files):
    """Class labels out of the output's range (negative, too large, not whole) and labels outside 0..1 for a
    binary loss are one sentence before any training (they failed every trial, or were scored as a regression);
    whole-number float labels under a sparse loss (what pandas gives) are classes, scored by accuracy."""
    import numpy as np
    from test_model_corpus import CORPUS

    from harness.trial.train import task_of

    with np.load(user_files / "data.npz") as data:
        arrays = dict(data)

    def config_with_labels(y_train, model=None, y_test=arrays["y_test"]):
        # A file of its own each: data sets are cached by name within a process.
        path = user_files / f"labels{len(list(user_files.glob('labels*.npz')))}.npz"
        np.savez(path, **{**arrays, "y_train": y_train, "y_test": y_test})
        config = user_config(user_files).replace(dataset=f"npz:{path}")
        return config.replace(model=model) if model else config

    def refusal(config):
        """The sentence refusing the config, with its data spec written DATA."""
        with pytest.raises(UsageError) as refused:
            run_trial(config, SeedSet.from_base(0))
        return str(refused.value).replace(config.dataset, "DATA")

    model = f"{user_files}/model.py:create_model"
    assert refusal(config_with_labels(arrays["y_train"] - 1)) == (
        f"{model}'s loss takes class labels 0 to 9, and the labels of DATA include -1.")
    # An integer label past the outputs is named too, not only the class count it implies.
    with_12 = np.where(np.arange(len(arrays["y_train"])) == 7, 12, arrays["y_train"])
    assert refusal(config_with_labels(with_12)) == (
        f"{model}'s loss takes class labels 0 to 9, and the labels of DATA include 12.")
    as_floats = arrays["y_train"].astype(np.float32)
    assert task_of(config_with_labels(as_floats)) == "multiclass"
    assert refusal(config_with_labels(np.where(np.arange(len(as_floats)) == 7, 12.0, as_floats))) == (
        f"{model}'s loss takes class labels 0 to 9, and the labels of DATA include 12.")
    binary = f"{CORPUS}:binary_sigmoid"
    assert refusal(config_with_labels(arrays["y_train"] % 3, binary, arrays["y_test"] % 3)) == (
        f"{binary}'s loss (binary_crossentropy) takes labels from 0 to 1, and the labels of DATA include 2.")


def test_an_uncompiled_model_trains_with_the_loss_and_optimizer_given(user_files):
    config = user_config(user_files, "uncompiled", loss="sparse_categorical_crossentropy", optimizer="sgd",
                     learning_rate=0.1)
    result = run_trial(config, SeedSet.from_base(0))
    assert result.status["code"] == "ok", result.status
    assert result.model["optimizer"] == {"class": "SGD", "learning_rate": pytest.approx(0.1)}
