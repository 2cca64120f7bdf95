"""Your own model and data: a Keras model file and numpy arrays, studied like the built-in benchmarks."""

import hashlib
import json

import numpy as np
import pytest
from conftest import run_program

from harness.errors import UsageError
from harness.studies import conditions, study_runner
from harness.studies.records import read_records, schema_errors
from harness.trial import keras_model
from harness.trial.config import TrialConfig, user_model_config
from harness.trial.datasets import load_dataset
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial
from harness.tuning import hyperparameters, robust

# A model file as users write it: no seed anywhere, not built (no Input), compiled.
USER_MODEL = """\
import keras
import tensorflow as tf


def create_model(units=32, dropout=0.5):
    model = keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(units, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def uncompiled():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


def not_a_model():
    return {"layers": 3}


def broken():
    raise RuntimeError("boom")


def wrong_input():
    return keras.Sequential([keras.layers.Reshape((5, 5)), keras.layers.Dense(10)])


class HostSGD(keras.optimizers.SGD):
    # SGD through a host callback, an op XLA cannot compile.

    def update_step(self, gradient, variable, learning_rate):
        gradient = tf.numpy_function(lambda g: g, [gradient], gradient.dtype, stateful=False)
        super().update_step(tf.reshape(gradient, variable.shape), variable, learning_rate)


def host_optimizer():
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(optimizer=HostSGD(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


CONSTANT = 3
"""
TRAINING = dict(epochs=2, steps_per_loop=5)


@pytest.fixture
def user_files(tmp_path):
    """model.py and data.npz (400 training and 200 test digits) in a fresh directory."""
    digits = load_dataset("digits")
    np.savez(tmp_path / "data.npz", x_train=digits.train_x[:400], y_train=digits.train_y[:400],
             x_test=digits.test_x[:200], y_test=digits.test_y[:200])
    (tmp_path / "model.py").write_text(USER_MODEL)
    return tmp_path


def _config(files, function="create_model", **overrides):
    return user_model_config(model=f"{files}/model.py:{function}", dataset=f"npz:{files}/data.npz",
                             **{**TRAINING, **overrides})


def _study(config, names, repeats, output_dir):
    specs = study_runner.plan(config, 0, SeedSet.from_base(0), conditions.parse_conditions(names), repeats, "user")
    study_runner.execute(specs, output_dir)
    return study_runner.study_records(specs, output_dir)


def test_each_seed_keeps_its_meaning_for_a_user_model(user_files):
    records = _study(_config(user_files), "control,init,dropout", 2, user_files / "study")
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


def test_records_identify_the_model_code_and_the_data(user_files):
    (record,) = _study(_config(user_files, model_args={"units": 16}), "control", 1, user_files / "study")
    source = hashlib.sha256((user_files / "model.py").read_bytes()).hexdigest()
    model = record["model"]
    assert model["spec"] == f"{user_files}/model.py:create_model" and model["source_sha256"] == source
    assert model["args"] == {"units": 16} and record["config"]["model_args"] == {"units": 16}
    # Dense(64 -> 16) and Dense(16 -> 10), weights and biases.
    assert model["parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert [layer["class"] for layer in model["architecture"]] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert model["optimizer"]["class"] == "Adam" and model["task"] == "multiclass"
    assert model["seed_generators"] == ["dropout#0"]
    assert record["data"]["spec"] == f"npz:{user_files}/data.npz"
    assert record["data"]["train_examples"] == 400 and record["data"]["test_examples"] == 200
    assert len(record["data"]["sha256"]) == 64
    assert record["metrics"]["test_examples"] == 200 and 0 <= record["metrics"]["test_accuracy"] <= 1


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
    here = run_trial(_config(user_files), SeedSet.from_base(0))
    assert here.fingerprints == fingerprints[0]
    changed_seed = run_trial(_config(user_files), SeedSet.from_base(0).replace(init=1))
    assert changed_seed.fingerprints["weights_sha256"] != fingerprints[0]["weights_sha256"]


def test_the_update_is_xla_compiled_on_request_and_from_a_size(user_files):
    op_by_op = run_trial(_config(user_files), SeedSet.from_base(0))  # 2,410 parameters: auto leaves it
    fused = run_trial(_config(user_files, xla_update="on"), SeedSet.from_base(0))
    assert op_by_op.status["code"] == fused.status["code"] == "ok"
    assert (op_by_op.model["update"], fused.model["update"]) == ("op by op", "xla")
    # The same start, other arithmetic: XLA's fused kernels round differently from Keras's ops one by one.
    assert fused.fingerprints["initial_weights_sha256"] == op_by_op.fingerprints["initial_weights_sha256"]
    assert fused.fingerprints["weights_sha256"] != op_by_op.fingerprints["weights_sha256"]
    assert run_trial(_config(user_files, xla_update="on"), SeedSet.from_base(0)).fingerprints == fused.fingerprints
    # auto compiles it from keras_model.XLA_UPDATE_MIN_PARAMETERS (64 * 1024 + 1024 + 1024 * 10 + 10 here).
    big = run_trial(_config(user_files, model_args={"units": 1024}, epochs=1), SeedSet.from_base(0))
    assert big.model["parameters"] > keras_model.XLA_UPDATE_MIN_PARAMETERS and big.model["update"] == "xla"
    assert run_trial(_config(user_files, xla=True, epochs=1), SeedSet.from_base(0)).model["update"] == "in the step"
    with pytest.raises(UsageError, match=r"^--model_args, --optimizer, --loss and --xla_update are for your own "
                       r"Keras model, not the built-in 'mlp'\.$"):
        TrialConfig("mlp_digits", xla_update="on")
    with pytest.raises(UsageError, match=r"^unknown --xla_update 'yes'; choose one of auto, on, off\.$"):
        _config(user_files, xla_update="yes")


def test_an_optimizer_xla_cannot_compile_is_told_to_run_op_by_op(user_files):
    failed = run_trial(_config(user_files, "host_optimizer", xla_update="on"), SeedSet.from_base(0))
    assert failed.status["code"] == "error"
    assert failed.status["message"].startswith("InvalidArgumentError: Detected unsupported operations")
    assert failed.status["message"].endswith(
        "; your optimizer's update was compiled with XLA: --xla_update=off runs it op by op")
    assert run_trial(_config(user_files, "host_optimizer"), SeedSet.from_base(0)).status["code"] == "ok"


def test_resuming_after_the_model_file_changed_is_refused(user_files):
    args = [f"--model={user_files}/model.py:create_model", f"--data=npz:{user_files}/data.npz", "--epochs=1",
            "--conditions=control", "--repeats=1", f"--output_dir={user_files / 'study'}"]
    assert run_program("harness.bench", *args).returncode == 0
    before = (user_files / "study" / "trials.jsonl").read_bytes()
    (user_files / "model.py").write_text(USER_MODEL.replace("units=32", "units=48"))
    result = run_program("harness.bench", *args, "--repeats=2")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # TF's start-up lines come first (TF 2.21 prints them before logging is set up); the sentence is last.
    assert result.stderr.splitlines()[-1].startswith(
        f"error: the source of {user_files}/model.py:create_model changed since the trials in "
        f"{user_files / 'study'} were recorded (sha256 ")
    assert (user_files / "study" / "trials.jsonl").read_bytes() == before


def test_resuming_after_the_data_changed_is_refused(user_files):
    config = _config(user_files, epochs=1)
    _study(config, "control", 1, user_files / "study")
    digits = load_dataset("digits")
    np.savez(user_files / "data.npz", x_train=digits.train_x[:401], y_train=digits.train_y[:401],
             x_test=digits.test_x[:200], y_test=digits.test_y[:200])
    load_dataset.cache_clear()
    with pytest.raises(UsageError, match=r"^the data npz:\S+ changed since the trials in \S+ were recorded"):
        _study(config, "control", 2, user_files / "study")


@pytest.mark.parametrize("function,message", [
    ("missing.py:create_model", "no such file {dir}/missing.py (the model spec)."),
    ("model.py:nope", "{dir}/model.py has no function 'nope' (the model spec '{dir}/model.py:nope')."),
    ("model.py:CONSTANT", "{dir}/model.py:CONSTANT is not callable; the model spec must name a function."),
    ("model.py:broken", "{dir}/model.py:broken raised RuntimeError: boom."),
    ("model.py:not_a_model", "{dir}/model.py:not_a_model returned dict, not a Keras model."),
    ("model.py:uncompiled", "{dir}/model.py:uncompiled returned a model that is not compiled; compile it in the "
                            "function or pass --loss (e.g. sparse_categorical_crossentropy or mse) and --optimizer."),
])
def test_a_bad_model_gets_one_sentence_naming_it(user_files, function, message):
    config = user_model_config(model=f"{user_files}/{function}", dataset=f"npz:{user_files}/data.npz", epochs=1)
    with pytest.raises(UsageError) as raised:
        run_trial(config, SeedSet.from_base(0))
    assert str(raised.value) == message.format(dir=user_files)


def test_a_model_that_cannot_take_the_data_says_so(user_files):
    config = _config(user_files, "wrong_input")
    with pytest.raises(UsageError, match=r"returned a model that has an unknown input shape and cannot be built "
                                         r"on the data's examples of shape \(8, 8, 1\)"):
        run_trial(config, SeedSet.from_base(0))


def test_an_uncompiled_model_trains_with_the_loss_and_optimizer_given(user_files):
    config = _config(user_files, "uncompiled", loss="sparse_categorical_crossentropy", optimizer="sgd",
                     learning_rate=0.1)
    result = run_trial(config, SeedSet.from_base(0))
    assert result.status["code"] == "ok", result.status
    assert result.model["optimizer"] == {"class": "SGD", "learning_rate": pytest.approx(0.1)}


def test_bad_model_input_on_the_command_line_is_one_sentence(user_files):
    result = run_program("harness.bench", f"--model={user_files}/model.py:nope", f"--data=npz:{user_files}/data.npz",
                         "--hidden_units=64", f"--output_dir={user_files / 'out'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("error: --hidden_units shapes the built-in models; set it in your "
                                              "model function (e.g. through --model_args).")
    result = run_program("harness.bench", f"--model={user_files}/model.py:nope", f"--data=npz:{user_files}/data.npz",
                         f"--output_dir={user_files / 'out'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"error: {user_files}/model.py has no function 'nope' (the model "
                                              f"spec '{user_files}/model.py:nope').")
    assert not (user_files / "out" / "trials.jsonl").exists()


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


def test_the_regression_example_with_tuned_hyperparameters(tmp_path):
    params = json.loads(open("examples/optuna_best_params.json").read())
    config = user_model_config(model="examples/optuna_regression.py:create_model",
                               dataset="examples/optuna_regression.py:load_data", model_args=params, epochs=3)
    records = _study(config, "control,init", 2, tmp_path)
    assert all(r["status"]["code"] == "ok" for r in records)
    assert all(r["model"]["task"] == "regression" and r["metrics"]["test_accuracy"] is None for r in records)
    assert all(r["model"]["optimizer"]["learning_rate"] == pytest.approx(0.01) for r in records)
    initial = {r["condition"]: set() for r in records}
    for r in records:
        initial[r["condition"]].add(r["fingerprints"]["initial_weights_sha256"])
    # The function's own tf.random.set_seed(seed) gets the init seed: init varies the weights, control does not.
    assert len(initial["control"]) == 1 and len(initial["init"]) == 2
    with pytest.raises(UsageError, match=r"^trials of 'optuna_regression.create_model' record no test_accuracy "
                                         r"\(its model is a regression\); pass --metric=test_loss$"):
        robust.scores(records, "test_accuracy")


def test_tuning_sets_arguments_of_the_model_function(user_files):
    space = hyperparameters.parse_space("learning_rate=1e-3..1e-1:log,model_args.units=8..64:log,"
                                        "model_args.activation=relu|tanh")
    assert [d.kind for d in space] == [float, int, str]
    base = _config(user_files)
    assert hyperparameters.default_space(base) == "learning_rate=1e-4..3e-2:log"
    tuned = hyperparameters.configured(base, {"model_args.units": 16, "learning_rate": 0.01})
    assert tuned.model_args == {"units": 16} and tuned.learning_rate == 0.01
    with pytest.raises(UsageError, match=r"^hidden_units shapes the built-in models; for your own model tune an "
                                         r"argument of its function instead, e\.g\. model_args\.units=16\.\.256:log$"):
        hyperparameters.check_space(hyperparameters.parse_space("hidden_units=8..64"), base)
    output_dir = user_files / "tune"
    result = run_program("harness.tune", f"--model={user_files}/model.py:create_model",
                         f"--data=npz:{user_files}/data.npz", "--epochs=1", "--n_trials=2", "--seeds_per_trial=2",
                         "--space=model_args.units=8|16", "--metric=test_accuracy", f"--output_dir={output_dir}")
    assert result.returncode == 0, result.stderr
    best = json.loads(next(output_dir.glob("*.best.json")).read_text())
    assert best["params"]["model_args.units"] in (8, 16)
    records = read_records(output_dir / "trials.jsonl")
    # Two seeds per candidate; a candidate drawn twice reuses its trials.
    assert len(records) in (2, 4) and all(r["model"]["args"] == r["config"]["model_args"] for r in records)
    for r in records:  # 64 inputs, `units` hidden units, 10 outputs.
        units = r["config"]["model_args"]["units"]
        assert units in (8, 16) and r["model"]["parameters"] == 64 * units + units + units * 10 + 10


def test_scan_and_trace_work_on_a_user_model(user_files):
    from harness.analysis.divergence import compare
    from harness.analysis.op_scan import train_step_ops

    ops = train_step_ops(_config(user_files))
    assert ops["MatMul"] >= 2 and any("Adam" in op or "AssignVariableOp" == op for op in ops)
    a = run_trial(_config(user_files, epochs=1), SeedSet.from_base(0), trace=True)
    b = run_trial(_config(user_files, epochs=1), SeedSet.from_base(0).replace(dropout=5), trace=True)
    found = compare(a.trace, b.trace)
    # Another dropout seed: the same initial weights, a different loss at the very first step.
    assert found["diverged"] and found["first_step"] == 0 and found["stage"] == "forward pass (loss)"


def create_model_for_the_api():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_the_python_api_studies_a_function_and_arrays(tmp_path):
    import harness

    digits = load_dataset("digits")
    data = (digits.train_x[:300], digits.train_y[:300], digits.test_x[:100], digits.test_y[:100])
    # control and kernels: what the gate's determinism rule needs to see.
    result = harness.study(model=create_model_for_the_api, data=data, conditions=["control", "kernels", "dropout"],
                           repeats=2, output_dir=str(tmp_path), **TRAINING)
    assert result.condition("control").bitwise_reproducible is True
    assert result.condition("dropout").unique_weight_hashes == 2
    assert "control" in str(result) and result.records_path == tmp_path / "trials.jsonl"
    records = read_records(result.records_path)
    assert len(records) == 6 and all(schema_errors(r) == [] for r in records)
    assert schema_errors(json.loads(result.summary_path.read_text())) == []
    # The study's programs read a user model's study like a built-in's.
    gate = run_program("harness.gate", f"--baseline={tmp_path}", f"--candidate={tmp_path}")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    report = run_program("harness.report", f"--input_dir={tmp_path}")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    # The report says what was trained on what: the model, its layers, the data's fingerprint.
    assert "create_model_for_the_api" in page and "Flatten, Dense, Dropout, Dense" in page
    assert records[0]["data"]["sha256"] in page
    with pytest.raises(UsageError, match="^condition env:onednn=0 needs a fresh process, which cannot see the data "
                                         "handed over in Python"):
        harness.study(model=create_model_for_the_api, data=data, conditions=["env:onednn=0"], repeats=1,
                      output_dir=str(tmp_path / "env"), **TRAINING)


def test_keras_fit_trainer_keeps_every_seed_meaning_and_control_repeats_across_processes(tmp_path):
    args = ["--model=examples/mnist_mlp.py:create_model", "--data=examples/mnist_mlp.py:load_data", "--epochs=2",
            "--trainer=keras_fit"]
    first = run_program("harness.bench", *args, "--conditions=control,init,shuffle,dropout", "--repeats=2",
                        f"--output_dir={tmp_path / 'a'}")
    assert first.returncode == 0, first.stderr
    assert "trained by the model's own Keras fit" in first.stdout
    second = run_program("harness.bench", *args, "--conditions=control", "--repeats=1",
                         f"--output_dir={tmp_path / 'b'}")
    assert second.returncode == 0, second.stderr
    records = read_records(tmp_path / "a" / "trials.jsonl")
    assert all(schema_errors(r) == [] and r["config"]["trainer"] == "keras_fit" for r in records)
    final = {name: {r["fingerprints"]["weights_sha256"] for r in records if r["condition"] == name}
             for name in ("control", "init", "shuffle", "dropout")}
    initial = {name: {r["fingerprints"]["initial_weights_sha256"] for r in records if r["condition"] == name}
               for name in ("control", "init", "shuffle", "dropout")}
    (control,) = final["control"]
    assert read_records(tmp_path / "b" / "trials.jsonl")[0]["fingerprints"]["weights_sha256"] == control
    for name in ("init", "shuffle", "dropout"):  # each changes the final weights
        assert len(final[name]) == 2 and control not in final[name], name
    assert initial["shuffle"] == initial["dropout"] == initial["control"] and len(initial["init"]) == 2
