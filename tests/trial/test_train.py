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


WEIGHTED_MODEL = """\
import keras


def create_model(loss="object"):
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                  if loss == "object" else "sparse_categorical_crossentropy")
    return model
"""


@pytest.fixture
def weighted_files(tmp_path):
    """model.py and the same 300 training digits with and without sample weights."""
    from harness.trial.datasets import load_dataset

    digits = load_dataset("digits")
    arrays = dict(x_train=digits.train_x[:300], y_train=digits.train_y[:300], x_test=digits.test_x[:200],
                  y_test=digits.test_y[:200])
    weights = np.random.default_rng(0).uniform(0, 3, 300).astype(np.float32)
    np.savez(tmp_path / "plain.npz", **arrays)
    np.savez(tmp_path / "weighted.npz", **arrays, w_train=weights)
    (tmp_path / "model.py").write_text(WEIGHTED_MODEL)
    return tmp_path


def test_sample_weights_weight_the_loss_as_keras_fit_does_bit_for_bit(weighted_files):
    """The harness's loop and Keras's own fit (the keras_fit trainer hands fit the same (x, y, w) batches) end
    at the same bits with a Loss object and with a loss function; weights change them; the built-in model's
    vectorized replicas and a user model's grouped replicas are their trials alone."""
    from harness.trial import grouped, vectorized
    from harness.trial.config import user_model_config

    seeds = [SeedSet.from_base(0), SeedSet.from_base(1)]
    for loss in ("object", "function"):
        config = user_model_config(model=f"{weighted_files}/model.py:create_model", model_args={"loss": loss},
                                   dataset=f"npz:{weighted_files}/weighted.npz", epochs=2, steps_per_loop=5)
        harness_loop = _weights(config, seeds[0])
        assert harness_loop == _weights(config.replace(trainer="keras_fit"), seeds[0]), loss
        assert harness_loop != _weights(config.replace(dataset=f"npz:{weighted_files}/plain.npz"), seeds[0])
    in_group = grouped.run_grouped([config.replace(replicas=2)] * 2, seeds)
    assert [r.fingerprints["weights_sha256"] for r in in_group] == [_weights(config, s) for s in seeds]
    builtin = load_benchmark("digits_mlp", dataset=f"npz:{weighted_files}/weighted.npz", epochs=2, steps_per_loop=5)
    for seed_sets in (seeds, [seeds[0], seeds[0].replace(init=7)]):  # the batched path, then the fused one
        replicas = vectorized.run_replicas([builtin.replace(replicas=2)] * 2, seed_sets)
        assert [r.fingerprints["weights_sha256"] for r in replicas] == [_weights(builtin, s) for s in seed_sets]


def test_the_weighted_loss_is_keras_s_own_on_a_batch(weighted_files):
    """The loss a weighted step minimizes is what the model's compile() computes with those sample weights."""
    import keras
    import tensorflow as tf

    from harness.trial import keras_model
    from harness.trial.config import user_model_config
    from harness.trial.datasets import load_dataset

    data = load_dataset(f"npz:{weighted_files}/weighted.npz")
    for loss in ("object", "function"):
        config = user_model_config(model=f"{weighted_files}/model.py:create_model", model_args={"loss": loss},
                                   dataset=f"npz:{weighted_files}/weighted.npz")
        model = keras_model.build_model(config, data, init_seed=0)
        task = keras_model.task_for(config, model, data)
        x, y, w = tf.constant(data.train_x[:32]), tf.constant(data.train_y[:32]), tf.constant(data.train_w[:32])
        outputs = model(x, training=False)
        ours = task.loss(y, outputs, w).numpy()
        keras_s = keras.ops.convert_to_numpy(model.compute_loss(x, y, outputs, sample_weight=w))
        assert ours.tobytes() == np.float32(keras_s).tobytes(), loss
        assert ours != task.loss(y, outputs, None).numpy()


def test_class_weight_is_keras_s_class_weight(weighted_files):
    """--class_weight gives each example its class's weight exactly as Keras's fit(class_weight=...) does (the
    same bits as fit with those weights as sample weights), trains as those weights given with the data would,
    keeps unweighted studies' ids, and is refused with the data's own weights or in another shape."""
    import keras

    from harness.errors import UsageError
    from harness.trial import keras_model
    from harness.trial.config import user_model_config
    from harness.trial.datasets import example_weights, load_dataset

    class_weight = {0: 3.0, 4: 0.25, 7: 0.0}
    plain = f"npz:{weighted_files}/plain.npz"
    config = user_model_config(model=f"{weighted_files}/model.py:create_model", dataset=plain, epochs=2,
                               steps_per_loop=5, class_weight=class_weight)
    assert config.class_weight == '{"0":3.0,"4":0.25,"7":0.0}' and config.class_weights() == class_weight
    data = load_dataset(plain)
    weights = example_weights(config, data)

    def fitted(**weighting):
        model = keras_model.build_model(config, data, init_seed=0)
        model.fit(data.train_x, data.train_y, batch_size=32, epochs=1, shuffle=False, verbose=0, **weighting)
        return b"".join(np.asarray(v).tobytes() for v in model.weights)

    assert fitted(class_weight=class_weight) == fitted(sample_weight=weights) != fitted()
    keras.backend.clear_session()

    np.savez(weighted_files / "as_data.npz", **dict(np.load(weighted_files / "plain.npz")), w_train=weights)
    by_class = _weights(config, SeedSet.from_base(0))
    assert by_class == _weights(config.replace(class_weight="", dataset=f"npz:{weighted_files}/as_data.npz"),
                                SeedSet.from_base(0))
    assert by_class != _weights(config.replace(class_weight=""), SeedSet.from_base(0))
    assert "class_weight" not in config.replace(class_weight="").as_dict()

    with pytest.raises(UsageError) as both:
        run_trial(config.replace(dataset=f"npz:{weighted_files}/weighted.npz"), SeedSet.from_base(0))
    assert str(both.value) == (f"npz:{weighted_files}/weighted.npz comes with sample weights and --class_weight "
                               "weights its classes too; Keras's fit takes one or the other: drop one")
    for given, said in (('{"a": 1}', "its class 'a' is not a class index (0, 1, 2...)."),
                        ({1: -2}, "class 1's weight must be a finite number of 0 or more, got -2."),
                        ("[1, 2]", "--class_weight takes a JSON object of class to weight, e.g. "
                                   "'{\"0\": 1, \"1\": 5}', not '[1, 2]'.")):
        with pytest.raises(UsageError) as refused:
            config.replace(class_weight=given)
        assert str(refused.value).endswith(said)
