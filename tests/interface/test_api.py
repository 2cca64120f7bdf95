"""The Python API: `harness.study` on a model function and numpy arrays, as a notebook user calls it."""

import json

import pytest
from conftest import TRAINING, run_program

from harness.errors import UsageError
from harness.studies.records import read_records, schema_errors
from harness.trial.datasets import load_dataset


def create_model_for_the_api():
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.slow
def test_the_python_api_studies_a_function_and_arrays(tmp_path):
    import harness

    digits = load_dataset("digits")
    data = (digits.train_x[:300], digits.train_y[:300], digits.test_x[:100], digits.test_y[:100])
    # control and kernels: what the gate's determinism rule needs to see.
    result = harness.study(model=create_model_for_the_api, data=data,
                           conditions=["control", "kernels", "dropout", "env:xla=1"], repeats=2,
                           output_dir=str(tmp_path), **TRAINING)
    assert result.condition("control").bitwise_reproducible is True
    assert result.condition("dropout").unique_weight_hashes == 2
    assert "control" in str(result) and result.records_path == tmp_path / "trials.jsonl"
    records = read_records(result.records_path)
    assert len(records) == 8 and all(schema_errors(r) == [] for r in records)
    # Replicas (auto): the user's model trains in groups, each replica its own model; what cannot, says why.
    assert {(r["condition"], (r["outputs"].get("vectorized") or {}).get("path")) for r in records} == {
        ("control", "grouped"), ("kernels", "grouped"), ("dropout", "grouped"), ("env:xla=1", None)}
    assert result.alone == {"env:xla=1": "XLA would compile the group's step as one cluster, fused across replicas, "
                                         "so its bits could differ"}
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


def test_a_built_model_handed_to_the_api_is_refused_in_one_sentence():
    import harness

    with pytest.raises(UsageError) as refused:
        harness.study(model=create_model_for_the_api(), data="digits")
    assert str(refused.value) == ("model must be a function that returns a Keras model (each trial builds its own, "
                                  "under its init seed), or a spec string; got a Sequential object")


def test_python_data_with_process_isolation_is_refused_for_the_isolation(tmp_path):
    import harness

    digits = load_dataset("digits")
    data = (digits.train_x[:100], digits.train_y[:100], digits.test_x[:50], digits.test_y[:50])
    with pytest.raises(UsageError) as refused:
        harness.study(model=create_model_for_the_api, data=data, conditions=["control"], repeats=2,
                      isolation="process", output_dir=str(tmp_path), **TRAINING)
    assert str(refused.value).startswith(
        'isolation="process" trains in other processes, which cannot see the data handed over in Python; name it '
        'as path/to/file.py:function (data: npz:PATH), or train in this process (isolation="inprocess", workers=1)')


def test_python_objects_cannot_travel_to_a_ray_cluster_and_an_unknown_executor_is_named(tmp_path):
    import harness

    digits = load_dataset("digits")
    data = (digits.train_x[:100], digits.train_y[:100], digits.test_x[:50], digits.test_y[:50])
    # The arrays stay in this process (the function can be imported from its file): refused before any cluster
    # is reached, so the study never connects.
    with pytest.raises(UsageError) as refused:
        harness.study(model=create_model_for_the_api, data=data, conditions=["control"], repeats=2,
                      executor="ray", ray_address="127.0.0.1:1", output_dir=str(tmp_path), **TRAINING)
    assert str(refused.value) == (
        "the Ray executor trains on other processes and machines, which cannot see the data handed over in Python; "
        "name it as path/to/file.py:function (data: npz:PATH)")
    assert not (tmp_path / "trials.jsonl").exists()
    with pytest.raises(UsageError, match=r"^executor must be one of local, ray, got 'slurm'$"):
        harness.study(model="examples/mnist_mlp.py:create_model", data="digits", executor="slurm")
    # Ray's settings without Ray would be ignored: the study would run here, not where they ask.
    with pytest.raises(UsageError, match=r'^ray_address and ray_resources are for executor="ray"; add it, or leave '
                                         r'them out$'):
        harness.study(model="examples/mnist_mlp.py:create_model", data="digits", ray_address="10.0.0.1:6379",
                      ray_resources={"gpu_a100": 1})
    with pytest.raises(UsageError, match=r"^ray_resources: the amount of gpu_a100 must be a positive number, got "
                                         r"'many'$"):
        harness.study(model="examples/mnist_mlp.py:create_model", data="digits", executor="ray",
                      ray_resources={"gpu_a100": "many"})
    with pytest.raises(UsageError, match=r"^ray_gpus_per_trial must be a number from 0 to 64, got nan$"):
        harness.study(model="examples/mnist_mlp.py:create_model", data="digits", executor="ray",
                      ray_gpus_per_trial=float("nan"))
    with pytest.raises(UsageError, match=r"^ray_resources must be a dict of resource name to amount, got a list$"):
        harness.study(model="examples/mnist_mlp.py:create_model", data="digits", executor="ray",
                      ray_resources=["gpu_a100"])


# harness.study's arguments, each bad in turn: what the flag of the same name refuses (the same bounds), and
# what no flag can be given (a number where a name belongs), each in one sentence before anything is built.
BAD_ARGUMENTS = {
    "repeats NaN": ({"repeats": float("nan")}, "repeats must be a whole number from 1 to 10,000, got nan"),
    "repeats a string": ({"repeats": "3"}, "repeats must be a whole number from 1 to 10,000, got '3'"),
    "repeats a bool": ({"repeats": True}, "repeats must be a whole number from 1 to 10,000, got True"),
    "repeats 10**12": ({"repeats": 10**12}, "repeats must be a whole number from 1 to 10,000, got 1000000000000"),
    "seed -1": ({"seed": -1}, "seed must be a whole number from 0 to 9,223,372,036,854,775,807, got -1"),
    "seed 1.5": ({"seed": 1.5}, "seed must be a whole number from 0 to 9,223,372,036,854,775,807, got 1.5"),
    "seed 5,000 digits": ({"seed": 10**5000}, "seed must be a whole number from 0 to 9,223,372,036,854,775,807, "
                                              "got a 5001-digit number"),
    "workers 0": ({"workers": 0}, "workers must be a whole number from 1 to 1,024, got 0"),
    "workers a million": ({"workers": 10**6}, "workers must be a whole number from 1 to 1,024, got 1000000"),
    "cost_blocks a string": ({"cost_blocks": "16"}, "cost_blocks must be 0 (no cost measurement) or 8 to 1000: fewer "
                             "paired blocks give an interval too wide to say anything; got '16'"),
    "trial_timeout -1": ({"trial_timeout": -1}, "trial_timeout must be a whole number from 0 to 604,800, got -1"),
    "trial_timeout a string": ({"trial_timeout": "60"}, "trial_timeout must be a whole number from 0 to 604,800, "
                                                        "got '60'"),
    "trial_timeout with a Python function": ({"model": lambda: None, "trial_timeout": 60}, (
        "trial_timeout stops a trial by ending the worker process it trains in, which cannot see the model handed "
        "over in Python; name it as path/to/file.py:function (data: npz:PATH), or leave trial_timeout out")),
    "a condition not a name": ({"conditions": ["control", 5]}, "conditions must be condition names (strings), got 5"),
    "conditions a number": ({"conditions": 5}, "conditions must be condition names (strings), got 5"),
    "output_dir a number": ({"output_dir": 5}, "output_dir must name a directory (a str or a path), got 5"),
    "output_dir empty": ({"output_dir": " "}, "output_dir names no directory (leave it out for the default, "
                                              "results/BENCHMARK)"),
    "benchmark a number": ({"benchmark": 5}, "benchmark must be a benchmark's name (a str), got 5"),
    "ray_address a number": ({"executor": "ray", "ray_address": 5}, "ray_address must be HOST:PORT (a str), got 5"),
    "a setting of the wrong type": ({"epochs": "3"}, "--epochs must be a whole number, got '3'."),
    "a float setting NaN": ({"epochs": 1, "learning_rate": "fast"}, "--learning_rate must be a number, got 'fast'."),
    "model_args not a dict": ({"model": "examples/mnist_mlp.py:create_model", "model_args": 5},
                              "--model_args must be a dict of the model function's keyword arguments, got 5."),
}


@pytest.mark.parametrize("given,said", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS)
def test_every_argument_is_checked_as_its_flag_is_in_one_sentence(tmp_path, given, said):
    import harness

    arguments = {"model": "mlp", "benchmark": "digits_mlp", "output_dir": str(tmp_path / "out"), **given}
    with pytest.raises(UsageError) as refused:
        harness.study(**arguments)
    assert str(refused.value) == said
    assert not (tmp_path / "out").exists()


def test_a_study_directory_holds_one_study_which_more_repeats_extend_and_another_is_refused(tmp_path):
    """More repeats of the same study extend it: the trials recorded reuse their records although their replica
    groups were another size (a trial's key holds it), so none is recorded twice. Another study (here --epochs)
    and input refused late (an empty training pool) leave every file of the directory as it was."""
    import harness
    from harness.validate import validate_file

    study = dict(model="mlp", benchmark="digits_mlp", epochs=1, max_train_examples=200, conditions=["control"],
                 cost_blocks=0, output_dir=str(tmp_path / "study"))
    harness.study(repeats=2, **study)
    extended = harness.study(repeats=3, **study)
    trials = tmp_path / "study" / "trials.jsonl"
    assert len(read_records(trials)) == 3 and validate_file(trials) == (3, [])
    assert extended.condition("control").n_ok == 3

    def files():
        return {path: path.read_bytes() for path in (tmp_path / "study").rglob("*")
                if path.is_file() and path.name != ".harness.lock"}  # the lock says who holds it, not a record

    before = files()
    with pytest.raises(UsageError) as other:
        harness.study(repeats=3, **{**study, "epochs": 2})
    study_id = json.loads((tmp_path / "study" / "study.json").read_text())["study_id"]
    other_id = other.value.args[0].split("this run is study ")[1][:12]
    assert str(other.value) == (f"{tmp_path / 'study'} holds study {study_id}, and this run is study {other_id} "
                                "(epochs 1 then, 2 now); running it there would mix two studies in one directory: "
                                "give --output_dir another directory")
    with pytest.raises(UsageError, match="^the training pool is empty after holding out the validation share"):
        harness.study(repeats=3, **{**study, "validation_fraction": 0.9999999})
    assert files() == before
    with pytest.raises(UsageError, match="^the training pool is empty"):
        harness.study(repeats=1, **{**study, "validation_fraction": 0.9999999, "output_dir": str(tmp_path / "new")})
    assert not (tmp_path / "new").exists()


def test_arrays_with_sample_weights_and_class_weights_train_weighted_through_the_api(tmp_path):
    """harness.study takes (x, y, w) arrays and class_weight={...} as Keras's fit takes them; the records say
    which data and setting, the summary says the loss was weighted, and both at once is refused before any file."""
    import numpy as np

    import harness

    digits = load_dataset("digits")
    x, y = digits.train_x[:250], digits.train_y[:250]
    w = np.random.default_rng(0).uniform(0, 2, 250).astype(np.float32)
    result = harness.study(model=create_model_for_the_api, data=(x, y, w), conditions=["control"], repeats=2,
                           output_dir=str(tmp_path / "sample"), epochs=1, steps_per_loop=5)
    records = read_records(result.records_path)
    assert all(schema_errors(r) == [] for r in records)
    assert records[0]["data"]["sample_weights"] == {
        "train": True, "test": True, "test_use": "held in the data's identity, not scored with: every test example "
                                                 "counts once, so runs are compared example by example"}
    assert result.condition("control").bitwise_reproducible is True
    summary = json.loads(result.summary_path.read_text())
    assert schema_errors(summary) == [] and summary["weighted"] == "sample"
    assert ("Each training example's loss is weighted by the sample weights that came with your data, as Keras's "
            "fit weights it; test accuracy counts every test example once.") in summary["findings"]

    by_class = harness.study(model=create_model_for_the_api, data=(x, y), conditions=["control"], repeats=1,
                             output_dir=str(tmp_path / "class"), epochs=1, steps_per_loop=5,
                             class_weight={3: 2.0, 0: 0.5})
    record = read_records(by_class.records_path)[0]
    assert record["config"]["class_weight"] == '{"0":0.5,"3":2.0}' and "sample_weights" not in record["data"]
    with pytest.raises(UsageError) as both:
        harness.study(model=create_model_for_the_api, data=(x, y, w), conditions=["control"], repeats=1,
                      output_dir=str(tmp_path / "both"), epochs=1, class_weight={3: 2.0})
    assert str(both.value).endswith("comes with sample weights and --class_weight weights its classes too; Keras's "
                                    "fit takes one or the other: drop one")
    assert not (tmp_path / "both").exists()
