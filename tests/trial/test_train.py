"""Real trials in this process: a trial is a pure function of its config and seeds."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, run_program

from harness.studies.records import read_records, schema_errors
from harness.trial.config import load_benchmark
from harness.trial.seeds import SOURCES, SeedSet
from harness.trial.train import run_trial


def _weights(config, seeds):
    result = run_trial(config, seeds)
    assert result.status["code"] == "ok", result.status
    return result.fingerprints["weights_sha256"]


def test_same_trial_twice_gives_identical_fingerprints(small_config):
    seeds = SeedSet.from_base(3)
    first, second = run_trial(small_config, seeds), run_trial(small_config, seeds)
    assert first.fingerprints == second.fingerprints
    assert first.metrics == second.metrics


def test_changing_any_single_source_seed_changes_the_weights(small_config):
    seeds = SeedSet.from_base(3)
    baseline = _weights(small_config, seeds)
    changed = {source: _weights(small_config, seeds.replace(**{source: getattr(seeds, source) + 1}))
               for source in SOURCES}
    assert all(h != baseline for h in changed.values()), changed
    assert len(set(changed.values())) == len(SOURCES)


def test_flipping_one_bit_of_one_weight_changes_the_result(small_config):
    seeds = SeedSet.from_base(3)
    flipped = run_trial(small_config.replace(flip_bit=500), seeds)
    # Variables count in tf.Module order (by name): dense1/bias holds the first 128 weights.
    assert flipped.outputs["flipped_variable"].startswith("dense1/kernel")
    assert flipped.fingerprints["weights_sha256"] != _weights(small_config, seeds)


def test_a_seed_a_source_does_not_use_changes_nothing(small_config):
    # Without a validation share the split seed picks nothing.
    config = small_config.replace(validation_fraction=0.0)
    seeds = SeedSet.from_base(3)
    assert _weights(config, seeds) == _weights(config, seeds.replace(split=seeds.split + 1))


def test_result_reports_metrics_timing_and_a_loss_curve(small_config):
    result = run_trial(small_config, SeedSet.from_base(0))
    metrics, timing = result.metrics, result.timing
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(metrics["test_per_class_accuracy"]) == 10
    assert len(metrics["epoch_train_loss"]) == small_config.epochs
    assert metrics["validation_examples"] == 80
    assert timing["steady_step_ms"]["median"] > 0 and timing["examples_per_s"] > 0
    assert timing["first_call_s"] > 0


def test_training_learns_the_embedded_digits():
    config = load_benchmark("digits_mlp", epochs=5, dropout_rate=0.2)
    result = run_trial(config, SeedSet.from_base(0))
    assert result.metrics["test_accuracy"] > 0.8  # chance is 0.1


def test_non_finite_loss_stops_the_trial_with_a_clear_status():
    config = load_benchmark("random_regression", learning_rate=1e38, epochs=3)
    result = run_trial(config, SeedSet.from_base(0))
    assert result.status["code"] == "nan_loss"
    assert "at step" in result.status["message"]
    assert not result.fingerprints


@pytest.mark.parametrize("benchmark,overrides", [
    ("random_regression", {}),
    ("mnist1d_mlp", {"epochs": 1}),
    ("embedding", {"epochs": 1}),
    ("digits_mlp", {"model": "cnn", "epochs": 1, "dropout_rate": 0.25}),
    pytest.param("digits_mlp", {"xla": True, "epochs": 1}, marks=pytest.mark.slow),
])
def test_every_model_trains_reproducibly(benchmark, overrides):
    config = load_benchmark(benchmark, **overrides)
    seeds = SeedSet.from_base(1)
    first, second = run_trial(config, seeds), run_trial(config, seeds)
    assert first.status["code"] == "ok", first.status
    assert first.fingerprints["weights_sha256"] == second.fingerprints["weights_sha256"]
    loss = first.metrics["test_loss"]
    assert np.isfinite(loss)


def test_determinism_switch_is_applied_per_trial(small_config):
    from harness.platform.determinism import op_determinism_enabled

    run_trial(small_config.replace(determinism=False, epochs=1), SeedSet.from_base(0))
    assert not op_determinism_enabled()
    run_trial(small_config.replace(epochs=1), SeedSet.from_base(0))
    assert op_determinism_enabled()


@pytest.mark.slow
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


SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from harness.platform import environment
    from harness.trial.config import load_benchmark
    from harness.studies.records import make_trial_record, schema_errors
    from harness.trial.seeds import SeedSet
    from harness.trial.train import inputs_identity, run_trial

    config = load_benchmark("digits_mlp", epochs=3, max_train_examples=601, dropout_rate=0.2, strategy="mirrored")
    seeds = SeedSet.from_base(0)
    first, second = run_trial(config, seeds), run_trial(config, seeds)
    alone = run_trial(config.replace(strategy="none"), seeds)
    record = make_trial_record(config=config, seeds=seeds, condition="control", repeat=0, study_id="s",
                               result=first, environment=environment.capture(), inputs=inputs_identity(config))
    print(json.dumps({"status": first.status, "replicas": first.outputs.get("replicas"),
                      "strategy": first.outputs.get("strategy"), "schema_errors": schema_errors(record),
                      "same_bits": first.fingerprints == second.fingerprints,
                      "accuracy": first.metrics["test_accuracy"], "alone": alone.metrics["test_accuracy"]}))
""")


@pytest.mark.slow
def test_mirrored_strategy_trains_records_replicas_and_is_bitwise_reproducible():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"]["code"] == "ok" and out["schema_errors"] == []
    assert (out["strategy"], out["replicas"]) == ("mirrored", 2)
    assert out["same_bits"] is True  # op determinism on: two replicas, same bits every time
    # It learns like one device (not the same bits: each replica draws dropout for its slice).
    assert out["accuracy"] > 0.7 and abs(out["accuracy"] - out["alone"]) < 0.1


def test_reordering_the_batchs_sums_changes_only_the_bits(small_config):
    """The `order` condition: the same examples, weights and dropout masks, summed in another order."""
    seeds = SeedSet.from_base(0)
    control = run_trial(small_config, seeds)
    reordered = [run_trial(small_config.replace(reduction_order=7), seeds) for _ in range(2)]
    other = run_trial(small_config.replace(reduction_order=8), seeds)
    assert reordered[0].fingerprints["initial_weights_sha256"] == control.fingerprints["initial_weights_sha256"]
    hashes = {r.fingerprints["weights_sha256"] for r in (control, *reordered, other)}
    assert len(hashes) == 3  # control, order seed 7 (twice: reproducible), order seed 8
    # Float reassociation, not another computation: the loss curves part, but only at rounding level.
    curves = [np.array(r.metrics["epoch_train_loss"]) for r in (control, reordered[0])]
    assert np.any(curves[0] != curves[1]) and np.allclose(curves[0], curves[1], rtol=1e-5, atol=0)


@pytest.mark.slow
def test_reordering_a_keras_model_with_random_layers_is_refused_in_one_sentence(user_files):
    from conftest import user_config

    from harness.errors import UsageError

    with pytest.raises(UsageError, match=r"^the `order` condition permutes each batch .* leave `order` out"):
        run_trial(user_config(user_files, reduction_order=3), SeedSet.from_base(0))
    plain = user_config(user_files, function="uncompiled", loss="sparse_categorical_crossentropy")
    trained = [run_trial(plain.replace(reduction_order=order), SeedSet.from_base(0)) for order in (-1, 3, 3)]
    assert all(r.status["code"] == "ok" for r in trained)
    assert len({r.fingerprints["weights_sha256"] for r in trained}) == 2


def test_a_config_field_of_another_type_is_one_sentence():
    """A config from Python or a file (harness.study's settings, --params) holds each field as its flag parses it:
    a string where a number belongs is refused in one sentence, not a TypeError inside a comparison or TF."""
    from harness.errors import UsageError

    for field, value, said in (("epochs", "3", "--epochs must be a whole number, got '3'."),
                               ("epochs", 2.5, "--epochs must be a whole number, got 2.5."),
                               ("epochs", True, "--epochs must be a whole number, got True."),
                               ("learning_rate", "fast", "--learning_rate must be a number, got 'fast'."),
                               ("augment", 1, "--augment must be True or False, got 1."),
                               ("dataset", 5, "--dataset must be a str, got 5.")):
        with pytest.raises(UsageError) as refused:
            load_benchmark("digits_mlp", **{field: value})
        assert str(refused.value) == said
    # numpy's integers are whole numbers (a tuner's suggestions may be).
    assert load_benchmark("digits_mlp", epochs=np.int64(3)).epochs == 3
