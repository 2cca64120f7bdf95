"""Vectorized replicas: K trials in one graph, each its own trial, reproducible when rerun vectorized."""

import pytest
from conftest import SMALL
from scipy import stats as scipy_stats

from harness.platform import environment
from harness.studies import conditions, study_runner
from harness.studies.records import make_trial_record, read_records, schema_errors
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet
from harness.trial.train import inputs_identity
from harness.trial.vectorized import run_replicas


def test_four_replicas_are_distinct_trials_and_rerun_bit_for_bit():
    config = load_benchmark("digits_mlp", **SMALL, replicas=4)
    seeds = [SeedSet.from_base(0).replace(init=i, shuffle=10 + i, dropout=20 + i) for i in range(4)]
    first, second = run_replicas([config] * 4, seeds), run_replicas([config] * 4, seeds)
    hashes = [r.fingerprints["weights_sha256"] for r in first]
    assert len(set(hashes)) == 4
    assert [r.fingerprints for r in first] == [r.fingerprints for r in second]
    for index, (result, seed_set) in enumerate(zip(first, seeds, strict=True)):
        assert result.outputs["vectorized"] == {"replicas": 4, "index": index, "path": "batched"}  # own orders
        record = make_trial_record(config=config, seeds=seed_set, condition="init", repeat=index, study_id="s",
                                   result=result, environment=environment.capture(), inputs=inputs_identity(config))
        assert schema_errors(record) == []
        assert record["config"]["replicas"] == 4 and record["timing"]["vectorized"] is True


def test_replicas_that_share_one_batch_order_train_fused_and_each_follows_its_sequential_trial():
    """init and dropout seeds alone: one wide first-layer matmul for the group (and one augmentation of the
    shared batch). Each replica starts from its sequential trial's weights and ends where that trial does,
    to float rounding (the wide matmul sums in another order, so not always to the bit)."""
    from harness.trial.train import run_trial
    from harness.trial.vectorized import shares_batches

    config = load_benchmark("digits_mlp", **SMALL)
    seeds = [SeedSet.from_base(0).replace(init=i, dropout=20 + i) for i in range(3)]
    assert shares_batches(config, seeds) and not shares_batches(config, [seeds[0], seeds[1].replace(augment=7)])
    group = [config.replace(replicas=3)] * 3
    first, second = run_replicas(group, seeds), run_replicas(group, seeds)
    assert [r.outputs["vectorized"]["path"] for r in first] == ["fused"] * 3
    assert [r.fingerprints for r in first] == [r.fingerprints for r in second]
    assert len({r.fingerprints["weights_sha256"] for r in first}) == 3
    for replica, seed_set in zip(first, seeds, strict=True):
        alone = run_trial(config, seed_set)
        assert replica.fingerprints["initial_weights_sha256"] == alone.fingerprints["initial_weights_sha256"]
        assert replica.metrics["test_loss"] == pytest.approx(alone.metrics["test_loss"], rel=1e-4)
        assert replica.metrics["train_loss"] == pytest.approx(alone.metrics["train_loss"], rel=1e-4)


def test_a_bit_group_flips_each_replicas_own_weight():
    base = load_benchmark("digits_mlp", **SMALL, replicas=2)
    seeds = SeedSet.from_base(0)
    results = run_replicas([base.replace(flip_bit=500), base.replace(flip_bit=9000)], [seeds, seeds])
    assert [r.outputs["flipped_variable"].split(":")[0] for r in results] == ["dense1/kernel", "dense2/kernel"]
    assert results[0].fingerprints["weights_sha256"] != results[1].fingerprints["weights_sha256"]


def _accuracies(output_dir):
    return [r["metrics"]["test_accuracy"] for r in read_records(output_dir / "trials.jsonl")]


def test_replica_results_agree_with_sequential_trials_of_the_same_condition(tmp_path):
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("init")
    sequential = study_runner.plan(base, 0, seeds, chosen, 8, "seq")
    vectorized = study_runner.plan(base, 0, seeds, chosen, 8, "vec", replicas=4)
    assert {s.config.replicas for s in vectorized} == {4} and {s.group for s in vectorized} == {0, 1}
    study_runner.execute(sequential, tmp_path / "seq")
    study_runner.execute(vectorized, tmp_path / "vec")
    a, b = _accuracies(tmp_path / "seq"), _accuracies(tmp_path / "vec")
    assert len(a) == len(b) == 8
    # Same distribution: Welch's test finds no difference, and the SD intervals overlap.
    assert scipy_stats.ttest_ind(a, b, equal_var=False).pvalue > 0.05
    sd_a, sd_b = scipy_stats.tstd(a), scipy_stats.tstd(b)
    assert 0 < sd_a and 0 < sd_b and max(sd_a, sd_b) / min(sd_a, sd_b) < 3.0


def test_conditions_that_cannot_be_vectorized_run_one_by_one():
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    specs = study_runner.plan(base, 0, seeds, conditions.parse_conditions("control,kernels,env:xla=1,all,bit,order"),
                              4, "s", replicas="auto")
    groups = {s.condition: s.group for s in specs}
    # Identical-seed repeats must be identical runs, and a replica's bits depend on its slot; `order` permutes
    # each trial's own batch, which the vectorized loop does not.
    assert groups["control"] is None and groups["kernels"] is None and groups["env:xla=1"] is None
    assert groups["order"] is None
    assert groups["all"] == 0 and groups["bit"] == 0
    cnn = study_runner.plan(load_benchmark("digits_mlp", **SMALL, model="cnn"), 0, seeds,
                     conditions.parse_conditions("init"), 4, "s", replicas=4)
    assert all(s.group is None for s in cnn)


def test_a_partly_recorded_group_reruns_and_writes_only_what_is_missing(tmp_path):
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    specs = study_runner.plan(base, 0, seeds, conditions.parse_conditions("init"), 3, "s", replicas=3)
    study_runner.execute(specs, tmp_path)
    records = read_records(tmp_path / "trials.jsonl")
    # Keep the first record, as if a kill had cut the group short, and resume.
    (tmp_path / "trials.jsonl").write_text((tmp_path / "trials.jsonl").read_text().splitlines()[0] + "\n")
    assert study_runner.execute(specs, tmp_path) == 2
    resumed = read_records(tmp_path / "trials.jsonl")
    assert [r["fingerprints"] for r in resumed] == [r["fingerprints"] for r in records]


@pytest.mark.parametrize("args,message", [
    (["--replicas=0"], "--replicas must be a whole number of at least 1, or auto"),
    (["--replicas=4", "--workers=2", "--conditions=init"], "vectorized replicas train in this process"),
])
def test_bad_replica_flags_get_one_sentence(tmp_path, args, message):
    from conftest import run_program

    result = run_program("harness.bench", *args, "--epochs=1", f"--output_dir={tmp_path}")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_the_speed_benchmark_prints_the_side_by_side_table_and_a_valid_record(tmp_path):
    import json

    from conftest import run_program

    result = run_program("harness.bench_speed", "--examples=512", "--epochs=2", "--replicas=2", "--nodoctor",
                         f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    for row in ("keras model.fit of examples/mnist_mlp.py:create_model (determinism on)",
                "harness loop on --model=examples/mnist_mlp.py:create_model", "harness loop (determinism on)",
                "harness loop (determinism off)", "harness --replicas=2, shared order, fused (aggregate)",
                "harness --replicas=2, own order, batched (aggregate)", "memory added (peak RSS)",
                "the full MNIST-MLP study (60,000 examples x 50 epochs, 120 trials of 12 conditions)",
                "keras model.fit + FingerprintCallback(every='epoch')",
                "keras model.fit + FingerprintCallback(every='step')", "ms a step ("):
        assert row in result.stdout
    record = json.loads((tmp_path / "speed.json").read_text())
    assert schema_errors(record) == [] and record["rows"][0]["vs_keras"] == 1.0
    assert record["memory"]["user"]["trial_mib"] >= 0 and record["memory"]["builtin"]["peak_mib"] > 0
