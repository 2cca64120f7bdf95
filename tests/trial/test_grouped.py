"""Grouped replicas: K trials of any model (the CNN, your Keras model) in one graph, each its trial alone."""

import pytest
from conftest import SMALL, user_config

from harness.platform import environment
from harness.studies import conditions, study_runner, unit_of_work
from harness.studies.records import make_trial_record, read_records, schema_errors
from harness.trial import grouped
from harness.trial.config import load_benchmark
from harness.trial.fingerprints import TRIAL_FINGERPRINTS
from harness.trial.seeds import SeedSet
from harness.trial.train import inputs_identity, run_trial


def _fingerprints(result):
    assert result.status["code"] == "ok", result.status
    return {name: result.fingerprints[name] for name in TRIAL_FINGERPRINTS}


@pytest.mark.parametrize("model", ["cnn", pytest.param("keras", marks=pytest.mark.slow)])
def test_each_grouped_replica_is_its_trial_alone_bit_for_bit(model, user_files):
    """The rerun-alone property on the grouped path: a replica's weights, predictions and loss trace are
    those of its seeds trained alone (run_trial), in any slot and group size, with its own batches or
    batches shared with the group."""
    config = load_benchmark("digits_mlp", **SMALL, model="cnn") if model == "cnn" else user_config(user_files)
    own = [SeedSet.from_base(0).replace(init=40 + i, shuffle=50 + i, dropout=60 + i) for i in range(3)]
    shared = [SeedSet.from_base(0).replace(init=70 + i, dropout=80 + i) for i in range(2)]
    alone = [_fingerprints(run_trial(config, seeds)) for seeds in own + shared]
    assert len({f["weights_sha256"] for f in alone}) == 5
    group = grouped.run_grouped([config.replace(replicas=3)] * 3, own)
    assert [r.outputs["vectorized"] for r in group] == [
        {"replicas": 3, "index": i, "path": "grouped"} for i in range(3)]
    assert [_fingerprints(r) for r in group] == alone[:3]
    # Other slots, in a group of another size; and two replicas sharing one pipeline of batches.
    pair = grouped.run_grouped([config.replace(replicas=2)] * 2, [own[2], own[0]])
    assert [_fingerprints(r) for r in pair] == [alone[2], alone[0]]
    assert [_fingerprints(r) for r in grouped.run_grouped([config.replace(replicas=2)] * 2, shared)] == alone[3:]
    record = make_trial_record(config=config.replace(replicas=3), seeds=own[0], condition="init", repeat=0,
                               study_id="s", result=group[0], environment=environment.capture(),
                               inputs=inputs_identity(config))
    assert schema_errors(record) == [] and record["timing"]["vectorized"] is True


@pytest.mark.slow
def test_a_keras_update_compiled_with_xla_keeps_each_replica_its_trial_alone(user_files):
    config = user_config(user_files, xla_update="on")
    seeds = [SeedSet.from_base(0).replace(init=40 + i, shuffle=50 + i) for i in range(2)]
    group = grouped.run_grouped([config.replace(replicas=2)] * 2, seeds)
    assert {r.model["update"] for r in group} == {"xla"}
    assert [_fingerprints(r) for r in group] == [_fingerprints(run_trial(config, s)) for s in seeds]


@pytest.mark.slow
def test_a_grouped_study_records_the_bits_of_the_sequential_study(tmp_path):
    """The conditions the stacked MLP path cannot take (`order`, each trial permuting its own batches) and a
    bit flip per replica, grouped: each record is the sequential study's."""
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("order,bit")
    sequential = study_runner.plan(base, 0, seeds, chosen, 3, "seq")
    together = study_runner.plan(base, 0, seeds, chosen, 3, "grouped", replicas=3)
    assert {(s.condition, s.group, unit_of_work.replica_path(s.config)) for s in together} == {
        ("order", 0, "grouped"), ("bit", 0, "stacked")}
    study_runner.execute(sequential, tmp_path / "seq")
    study_runner.execute(together, tmp_path / "grouped")

    def by_trial(directory):
        return {(r["condition"], r["repeat"]): (r["fingerprints"], (r["outputs"].get("vectorized") or {}).get("path"))
                for r in read_records(directory / "trials.jsonl")}

    expected, got = by_trial(tmp_path / "seq"), by_trial(tmp_path / "grouped")
    assert {key: f for key, (f, _) in got.items()} == {key: f for key, (f, _) in expected.items()}
    assert {key: path for key, (_, path) in got.items() if key[0] == "order"} == {
        ("order", r): "grouped" for r in range(3)}
    assert len({f["weights_sha256"] for (condition, _), (f, _) in got.items() if condition == "order"}) == 3


def test_trials_that_cannot_be_grouped_train_alone_and_the_study_says_why(user_files):
    seeds = SeedSet.from_base(0)
    chosen = conditions.parse_conditions("init,env:onednn=0")
    specs = study_runner.plan(user_config(user_files, trainer="keras_fit"), 0, seeds, chosen, 2, "s", replicas=2)
    assert all(s.group is None for s in specs)
    assert study_runner.alone_reasons(specs) == {
        "init": "--trainer=keras_fit trains with Keras's own fit, one model at a time",
        "env:onednn=0": "--trainer=keras_fit trains with Keras's own fit, one model at a time"}
    xla = study_runner.plan(user_config(user_files, xla=True), 0, seeds, chosen[:1], 2, "s", replicas=2)
    assert study_runner.alone_reasons(xla) == {"init": grouped.why_not(user_config(user_files, xla=True))}
    # auto: the grouped path's K for a small model, and one at a time past AUTO_MAX_WEIGHTS, which it says.
    assert grouped.auto_replicas(user_config(user_files)) == grouped.MAX_AUTO_REPLICAS
    big = study_runner.plan(user_config(user_files, model_args={"units": 8000}), 0, seeds, chosen[:1], 2, "s",
                            replicas="auto")
    assert all(s.group is None for s in big)
    assert study_runner.alone_reasons(big, auto=True) == {"init": (
        "--replicas=auto trains a model this size one trial at a time (a group would gain little, docs/speed.md); "
        "--replicas=K groups it anyway")}


def test_a_replica_whose_loss_diverges_fails_as_its_trial_alone_does():
    """A group trains on to its last step; each replica whose loss became NaN records what run_trial records."""
    from harness.trial.vectorized import run_replicas

    config = load_benchmark("digits_mlp", **SMALL, learning_rate=1e30)
    seeds = [SeedSet.from_base(0).replace(init=i) for i in range(2)]
    alone = [run_trial(config, seed_set).status for seed_set in seeds]
    assert alone == [{"code": "nan_loss", "message": "the training loss became nan at step 1."}] * 2
    for run in (run_replicas, grouped.run_grouped):
        assert [r.status for r in run([config.replace(replicas=2)] * 2, seeds)] == alone


@pytest.mark.slow
def test_a_two_input_model_groups_bit_for_bit_and_unseeded_draws_train_alone():
    """Several inputs keep their structure through a group's pipelines; a model drawing keras.random numbers with
    no seed (one global generator per process, which replicas would share) is not grouped, and says why."""
    from test_model_corpus import corpus_config

    config = corpus_config("two_inputs", "image_and_row_means")
    seed_sets = [SeedSet.from_base(0).replace(init=40 + i, dropout=60 + i) for i in range(2)]
    alone = [_fingerprints(run_trial(config, seeds)) for seeds in seed_sets]
    assert [_fingerprints(r) for r in grouped.run_grouped([config.replace(replicas=2)] * 2, seed_sets)] == alone
    unseeded = corpus_config("unseeded_ops_random_in_call", "images")
    assert grouped.why_not(unseeded) == (
        f"{unseeded.model} draws keras.random numbers with no seed, from Keras's one global generator, which a "
        "group's replicas would share")
