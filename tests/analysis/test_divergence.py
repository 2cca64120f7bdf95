"""Finding the source: tracing keeps the bits, and the divergence locator names the first step and variable,
and the layer where the runs part (checked against differences planted in a known place)."""

import json

import numpy as np
import pytest
from conftest import CALLBACK_SCRIPT, run_program, user_config

from harness.analysis import divergence
from harness.studies.records import schema_errors
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial

TRIAL = ["--epochs=2", "--max_train_examples=300"]


def _trace(**overrides):
    config = load_benchmark("digits_mlp", epochs=2, max_train_examples=300, **overrides)
    return run_trial(config, SeedSet.from_base(0), trace=True)


def test_tracing_does_not_change_the_bits():
    traced, plain = _trace(), run_trial(load_benchmark("digits_mlp", epochs=2, max_train_examples=300),
                                        SeedSet.from_base(0))
    assert traced.fingerprints == plain.fingerprints
    steps = traced.trace["steps"]
    assert steps.shape == (18, 1 + 2 * 4, 8)  # loss, 4 gradients, 4 updated variables, 8 bytes each


@pytest.mark.parametrize("flip,variable,part", [
    (500, "dense1/kernel:0", {"phase": "forward", "agreeing": [], "gradient_into": None}),
    # One ulp of this dense2 weight rounds away in every output at step 0 (outputs equal, so the loss too), but
    # not in the gradient dense2 passes back through it: the runs part in dense2's backward pass.
    (8500, "dense2/kernel:0", {"phase": "backward", "agreeing": ["dense1", "dropout", "dense2"],
                               "gradient_into": "dropout"})])
def test_a_bit_flipped_in_one_run_is_named_exactly(flip, variable, part):
    a, b = _trace().trace, _trace(flip_bit=flip).trace
    found = divergence.compare(a, b)
    assert found["diverged"] and found["first_step"] == 0 and found["stage"] == "initial weights"
    assert found["variables"] == [variable] and found["layer"] == variable.split("/")[0]
    # The layer holding the flipped weight is where the runs part, at step 0.
    layer = variable.split("/")[0]
    assert found["first_layer"] == {"step": 0, "path": layer, "class": "Dense", "inputs_equal": True, **part}
    assert f"The runs part in layer `{layer}` (Dense) at step 0 ({part['phase']} pass): " in \
           divergence.format_divergence(found, "")


@pytest.mark.slow
def test_two_identical_runs_in_fresh_processes_never_diverge(tmp_path):
    result = run_program("harness.diverge", *TRIAL, f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("No divergence: all 18 steps (loss, every gradient, every updated variable, every layer's inputs, "
            "output and output gradient) and the initial weights are bitwise identical: the runs never part."
            ) in result.stdout
    record = json.loads((tmp_path / "divergence.json").read_text())
    assert schema_errors(record) == [] and record["diverged"] is False and record["final_weights_equal"]
    assert record["layers_traced"] and record["first_layer"] is None
    # Comparing the two saved traces again gives the same answer.
    again = run_program("harness.diverge", f"--traces={tmp_path / 'trace_a.npz'},{tmp_path / 'trace_b.npz'}",
                        f"--output_dir={tmp_path / 'again'}")
    assert again.returncode == 0 and "No divergence" in again.stdout


@pytest.mark.slow
def test_a_real_onednn_difference_on_cpu_is_located_where_the_cpu_makes_one(tmp_path):
    """oneDNN changes the bits only where its kernels compute differently from TF's own: on the AVX-512 machine
    these docs were measured on, from step 8; on an AVX2-only AMD EPYC, in no step of either MLP, on or off. The
    answer must be exact either way: the first step and variable, or all steps identical."""
    from harness.platform.environment import cpu_instruction_sets

    # Both settings named, whatever this CPU's default (TensorFlow leaves oneDNN off on an AVX2-only CPU).
    result = run_program("harness.diverge", *TRIAL, "--b_env=TF_ENABLE_ONEDNN_OPTS=1", f"--output_dir={tmp_path}",
                         env_vars={"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "divergence.json").read_text())
    assert schema_errors(record) == []
    # The records say what TensorFlow did, not what the variable's absence would suggest.
    assert record["context"][0]["onednn"] is False and record["context"][1]["onednn"] is True
    if "avx512f" in (cpu_instruction_sets() or "").split():
        assert record["diverged"] and not record["final_weights_equal"]
    if record["diverged"]:
        assert not record["final_weights_equal"]
        assert isinstance(record["first_step"], int) and record["variables"] and record["layer"] in ("dense1", "dense2")
        assert f"First divergence at step {record['first_step']} of 18" in result.stdout
    else:
        assert record["final_weights_equal"] and "No divergence: all 18 steps" in result.stdout


@pytest.mark.slow
def test_bad_diverge_input_is_one_sentence(tmp_path):
    for args, message in ((["--traces=only_one.npz"], "--traces takes two files"),
                          ([f"--traces={tmp_path}/a.npz,{tmp_path}/b.npz"], "no such trace file"),
                          (["--b_env=NOEQUALS"], "--b_env takes NAME=VALUE pairs")):
        result = run_program("harness.diverge", *args, f"--output_dir={tmp_path}")
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_traces_of_different_lengths_say_where_the_shorter_run_ended():
    from harness.analysis.divergence import compare, format_divergence

    def trace(steps):
        return {"variables": ["dense/kernel:0"], "layers": ["dense"], "initial": [np.zeros(3)],
                "steps": np.zeros((steps, 3), np.uint64)}

    found = compare(trace(5), trace(8))
    assert found["diverged"] and found["stage"] == "run length" and found["first_step"] == 5
    assert found["steps"] == {"a": 5, "b": 8}
    assert format_divergence(found, "x").splitlines()[1] == (
        "The runs agree in all 5 steps both have, then run A ended: A ran 5 steps and B 8 (another --epochs, "
        "--batch_size or data size, or a run cut short).")
    assert not compare(trace(5), trace(5))["diverged"]


@pytest.mark.slow
def test_callback_traces_of_two_runs_feed_diverge(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    script = tmp_path / "train.py"
    script.write_text(CALLBACK_SCRIPT)
    for side in ("a", "b"):
        subprocess.run([sys.executable, str(script), str(tmp_path / f"{side}.jsonl")], check=True, cwd=REPO,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)}, capture_output=True)
    result = run_program("harness.diverge", f"--traces={tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl'}",
                         f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert ("First divergence at step 0 of 8, in the weights (after the step): sequential/dense/kernel "
            "(layer sequential/dense).") in result.stdout
    record = json.loads((tmp_path / "out" / "divergence.json").read_text())
    assert schema_errors(record) == [] and record["has_gradients"] is False and record["first_step"] == 0
    same = run_program("harness.diverge", f"--traces={tmp_path / 'a.jsonl'},{tmp_path / 'a.jsonl'}",
                       f"--output_dir={tmp_path / 'same'}")
    assert "No divergence: all 8 steps (loss and every variable)" in same.stdout


def test_growth_of_a_drift_reads_its_rate_and_when_predictions_part():
    steps = np.arange(0, 1000, 100)
    base = np.ones((len(steps), 50), np.float32)
    drift = 1e-6 * np.exp(0.01 * steps)  # e-fold every 100 steps
    a = {"snapshot_steps": steps, "snapshot_weights": base, "snapshot_predictions": np.zeros((len(steps), 20), int)}
    b = dict(a, snapshot_weights=base + drift[:, None].astype(np.float32))
    reference = dict(a, snapshot_weights=base + 0.5)
    found = divergence.growth(a, b, reference)
    assert abs(found["growth_per_step"] - 0.01) < 1e-3 and found["first_prediction_change_step"] is None
    assert abs(found["reference_distance"] - 0.5) < 1e-6
    # From 1e-6 * e^9 to 0.5 at e-fold per 100 steps: ln(0.5 / 8.1e-3) * 100, about 412 steps.
    assert 400 < found["steps_to_reference"] < 425
    predictions = np.zeros((len(steps), 20), int)
    predictions[6:, 3] = 1
    parted = divergence.growth(a, dict(b, snapshot_predictions=predictions))
    assert parted["first_prediction_change_step"] == 600 and parted["steps_to_reference"] is None
    assert "first differ at step 600" in divergence.format_growth(parted)


@pytest.mark.slow
def test_the_bit_probe_measures_the_drift_of_a_flipped_run(tmp_path):
    result = run_program("harness.diverge", *TRIAL, "--steps_per_loop=2", "--b_flip_bit=500",
                         f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "divergence.json").read_text())
    assert schema_errors(record) == [] and len(record["traces"]) == 3
    drift = record["growth"]
    assert drift["relative_distance"][0] > 0 and drift["relative_distance"][-1] > drift["relative_distance"][0]
    assert drift["growth_per_step"] > 0 and drift["reference_distance"] > drift["relative_distance"][-1]
    assert "Weight distance from run A" in result.stdout and (tmp_path / "growth.png").stat().st_size > 10_000


# Differences planted in a known place of a user's model, each only where PLANTED=1 (read when the model is
# made, so that diverge's --b_env=PLANTED=1 plants it in run B only): unseeded noise added to the output of a
# middle layer (`mid`), of a layer inside a sub-model (`block/inner_noisy`), or to the gradient a layer passes
# back (`noisy_grad`, identity forward).
PLANTED_MODEL = """\
import os

import keras
import tensorflow as tf


class NoisyDense(keras.layers.Dense):
    def __init__(self, units, noisy=False, **kwargs):
        super().__init__(units, activation="relu", **kwargs)
        self.noisy = noisy

    def call(self, inputs):
        output = super().call(inputs)
        return output + tf.random.normal(tf.shape(output), stddev=1e-3) if self.noisy else output


class NoisyGradient(keras.layers.Layer):
    def __init__(self, noisy=False, **kwargs):
        super().__init__(**kwargs)
        self.noisy = noisy

    def call(self, inputs):
        noisy = self.noisy

        @tf.custom_gradient
        def identity(x):
            def gradient(upstream):
                return upstream + tf.random.normal(tf.shape(upstream), stddev=1e-3) if noisy else upstream
            return tf.identity(x), gradient

        return identity(inputs)


def _model(*layers):
    model = keras.Sequential([keras.layers.Flatten(name="flat"),
                              keras.layers.Dense(16, activation="relu", name="first"), *layers,
                              keras.layers.Dense(10, name="last")])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def planted():
    return _model(NoisyDense(16, os.environ.get("PLANTED") == "1", name="mid"))


def nested():
    return _model(keras.Sequential([keras.layers.Dense(16, activation="relu", name="inner_a"),
                                    NoisyDense(16, os.environ.get("PLANTED") == "1", name="inner_noisy")],
                                   name="block"))


def noisy_gradient():
    return _model(NoisyGradient(os.environ.get("PLANTED") == "1", name="noisy_grad"),
                  keras.layers.Dense(16, activation="relu", name="mid"))
"""


@pytest.fixture
def planted(user_files):
    model = user_files / "model.py"
    model.write_text(model.read_text() + "\n\n" + PLANTED_MODEL)
    return user_files


@pytest.mark.parametrize("function,expected", [
    ("planted", {"phase": "forward", "step": 0, "path": "mid", "class": "NoisyDense", "inputs_equal": True,
                 "agreeing": ["flat", "first"], "gradient_into": None}),
    pytest.param("nested", {"phase": "forward", "step": 0, "path": "block/inner_noisy", "class": "NoisyDense",
                            "inputs_equal": True, "agreeing": ["flat", "first", "block/inner_a"],
                            "gradient_into": None}, marks=pytest.mark.slow),
    pytest.param("noisy_gradient", {"phase": "backward", "step": 0, "path": "noisy_grad", "class": "NoisyGradient",
                                    "inputs_equal": True, "agreeing": ["flat", "first", "noisy_grad", "mid", "last"],
                                    "gradient_into": "first"}, marks=pytest.mark.slow),
])
def test_the_layer_where_a_difference_is_planted_is_named(planted, monkeypatch, function, expected):
    config = user_config(planted, function, epochs=1)
    a = run_trial(config, SeedSet.from_base(0), trace=True).trace
    monkeypatch.setenv("PLANTED", "1")
    b = run_trial(config, SeedSet.from_base(0), trace=True).trace
    found = divergence.compare(a, b)
    assert found["diverged"] and found["first_step"] == 0
    assert found["stage"] == ("backward pass (gradient)" if expected["phase"] == "backward" else "forward pass (loss)")
    assert found["first_layer"] == expected


@pytest.mark.slow
def test_diverge_names_the_planted_layer_of_a_user_model_from_b_env(planted, tmp_path):
    out = tmp_path / "out"
    result = run_program("harness.diverge", f"--model={planted}/model.py:planted",
                         f"--dataset=npz:{planted}/data.npz", "--epochs=1", "--b_env=PLANTED=1", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("The runs part in layer `mid` (NoisyDense) at step 0 (forward pass): its inputs are equal, its output "
            "differs. The layers before it agree: `flat`, `first`.") in result.stdout
    record = json.loads((out / "divergence.json").read_text())
    assert schema_errors(record) == [] and record["first_layer"]["path"] == "mid"
    assert record["run_b_differs_by"]["env"] == {"PLANTED": "1"}
    # Inside `mid`: the random op only run B runs (tests/analysis/test_first_op.py checks the op in-process).
    assert ("The first op of those that makes new values: `sequential_1/mid_1/random_normal/RandomStandardNormal` "
            "(RandomStandardNormal), in run B only.") in result.stdout
    assert record["first_op"]["type"] == "RandomStandardNormal" and record["first_op"]["one_run_only"] == "b"
