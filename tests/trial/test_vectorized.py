"""Vectorized replicas: K trials in one graph, each its own trial, reproducible when rerun vectorized."""

import numpy as np
import pytest
from conftest import SMALL

from harness.platform import environment
from harness.studies import conditions, study_runner, unit_of_work
from harness.studies.records import make_trial_record, read_records, schema_errors
from harness.trial.config import load_benchmark
from harness.trial.fingerprints import TRIAL_FINGERPRINTS
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


def _fingerprints(result):
    return {name: result.fingerprints[name] for name in TRIAL_FINGERPRINTS}


@pytest.mark.parametrize("path,varied", [("fused", ("init", "dropout")), ("batched", ("init", "shuffle", "split"))])
def test_each_replica_is_its_sequential_trial_bit_for_bit_in_any_slot_and_group_size(path, varied):
    """The rerun-alone property: a replica's weights, predictions and loss trace are those of its seeds run
    alone (run_trial), whatever its slot and the group's size. Fused: one wide first-layer matmul for
    replicas sharing one batch order (and one augmentation of the shared batch); batched: their own."""
    from harness.trial.datasets import shares_batches
    from harness.trial.train import run_trial

    config = load_benchmark("digits_mlp", **SMALL)
    seeds = [SeedSet.from_base(0).replace(**{source: 40 + 10 * i + n for n, source in enumerate(varied)})
             for i in range(3)]
    assert shares_batches(config, seeds) == (path == "fused")
    alone = [_fingerprints(run_trial(config, seed_set)) for seed_set in seeds]
    assert len({f["weights_sha256"] for f in alone}) == 3
    group = run_replicas([config.replace(replicas=3)] * 3, seeds)
    assert [r.outputs["vectorized"]["path"] for r in group] == [path] * 3
    assert [_fingerprints(r) for r in group] == alone
    # Another slot, in a group of another size.
    pair = run_replicas([config.replace(replicas=2)] * 2, [seeds[2], seeds[0]])
    assert [_fingerprints(r) for r in pair] == [alone[2], alone[0]]


def test_a_bit_group_flips_each_replicas_own_weight():
    base = load_benchmark("digits_mlp", **SMALL, replicas=2)
    seeds = SeedSet.from_base(0)
    results = run_replicas([base.replace(flip_bit=500), base.replace(flip_bit=9000)], [seeds, seeds])
    assert [r.outputs["flipped_variable"].split(":")[0] for r in results] == ["dense1/kernel", "dense2/kernel"]
    assert results[0].fingerprints["weights_sha256"] != results[1].fingerprints["weights_sha256"]


def _accuracies(output_dir):
    return [r["metrics"]["test_accuracy"] for r in read_records(output_dir / "trials.jsonl")]


def _fingerprints_by_trial(output_dir):
    return {(r["condition"], r["repeat"]): r["fingerprints"] for r in read_records(output_dir / "trials.jsonl")}


@pytest.mark.slow
def test_a_vectorized_study_records_the_bits_of_the_sequential_study(tmp_path):
    """Every condition that can be vectorized, control and kernels included (identical repeats stay identical
    runs), in groups of 2, 2 and 1: each record's fingerprints are the sequential study's."""
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("control,kernels,init,shuffle,bit")
    sequential = study_runner.plan(base, 0, seeds, chosen, 5, "seq")
    vectorized = study_runner.plan(base, 0, seeds, chosen, 5, "vec", replicas=2)
    assert {s.group for s in vectorized} == {0, 1, 2} and {s.config.replicas for s in vectorized} == {1, 2}
    study_runner.execute(sequential, tmp_path / "seq")
    study_runner.execute(vectorized, tmp_path / "vec")
    expected, got = _fingerprints_by_trial(tmp_path / "seq"), _fingerprints_by_trial(tmp_path / "vec")
    assert len(expected) == 25 and got == expected
    assert len({expected["control", r]["weights_sha256"] for r in range(5)}) == 1
    # A group's step time was measured once: the summary counts it once, as one trial's share of it.
    from harness.analysis.summary import _condition_summary

    init = [r for r in read_records(tmp_path / "vec" / "trials.jsonl") if r["condition"] == "init"]
    row = _condition_summary(conditions.condition("init"), init, 5, "test_accuracy", tmp_path / "vec")
    group_steps = [r["timing"]["steady_step_ms"]["median"] / r["config"]["replicas"] for r in init
                   if r["outputs"]["vectorized"]["index"] == 0]
    assert len(group_steps) == 3 and row["step_ms"] == group_steps


def test_which_conditions_run_vectorized():
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("control,kernels,env:xla=1,env:onednn=0,env:load=1,all,bit,order")
    specs = study_runner.plan(base, 0, seeds, chosen, 4, "s", replicas="auto")
    groups = {s.condition: (s.group, unit_of_work.replica_path(s.config)) for s in specs}
    assert groups["env:xla=1"][0] is None  # XLA would compile the group's step as one cluster
    # A process of its own, or others' load: the group trains there, as its trials would.
    assert {groups[name] for name in ("control", "kernels", "all", "bit", "env:onednn=0", "env:load=1")} == {
        (0, "stacked")}
    # `order` permutes each trial's own batch, which the stacked loop does not: each replica its own model.
    assert groups["order"] == (0, "grouped")
    cnn = study_runner.plan(load_benchmark("digits_mlp", **SMALL, model="cnn"), 0, seeds,
                            conditions.parse_conditions("init"), 4, "s", replicas=4)
    assert {(s.group, unit_of_work.replica_path(s.config)) for s in cnn} == {(0, "grouped")}


@pytest.mark.slow
def test_environment_variants_train_as_groups_in_their_environment_with_the_bits_of_their_trials_alone(tmp_path):
    """env:onednn=0's groups train in a worker process of their environment (other kernels), env:load=1's
    under other processes' load: each record is the one-by-one study's, fused (shared order) and batched."""
    base, seeds = load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0)
    chosen = conditions.parse_conditions("env:onednn=0,env:load=1,split")
    alone = study_runner.plan(base, 0, seeds, chosen, 2, "alone")
    together = study_runner.plan(base, 0, seeds, chosen, 2, "together", replicas=2)
    assert all(s.group == 0 for s in together)
    assert study_runner.execute(alone, tmp_path / "alone") == study_runner.execute(together, tmp_path / "together") == 6
    records = read_records(tmp_path / "together" / "trials.jsonl")
    assert {(r["condition"], r["outputs"]["vectorized"]["path"]) for r in records} == {
        ("env:onednn=0", "fused"), ("env:load=1", "fused"), ("split", "batched")}
    assert _fingerprints_by_trial(tmp_path / "together") == _fingerprints_by_trial(tmp_path / "alone")
    # A group with one member recorded: its worker trains the whole group and writes only the missing record.
    path = tmp_path / "together" / "trials.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    dropped = next(i for i, line in enumerate(lines) if '"condition": "env:onednn=0"' in line)
    path.write_text("".join(lines[:dropped] + lines[dropped + 1:]))
    assert study_runner.execute(together, tmp_path / "together") == 1
    assert _fingerprints_by_trial(tmp_path / "together") == _fingerprints_by_trial(tmp_path / "alone")


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
    (["--replicas=4", "--isolation=process", "--conditions=init"], "vectorized replicas train together in one "
                                                                      "process"),
])
@pytest.mark.slow
def test_bad_replica_flags_get_one_sentence(tmp_path, args, message):
    from conftest import run_program

    result = run_program("harness.bench", *args, "--epochs=1", f"--output_dir={tmp_path}")
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_speed_benchmark_prints_the_side_by_side_table_and_a_valid_record(tmp_path):
    import json

    from conftest import run_program

    # The Ray row alone trains four small studies (about five minutes here, more on a busy CI machine).
    result = run_program("harness.bench_speed", "--examples=256", "--epochs=2", "--replicas=auto", "--nodoctor",
                         "--runs=2", f"--output_dir={tmp_path}", timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    for row in ("keras model.fit of examples/mnist_mlp.py:create_model (determinism on)",
                "harness loop on --model=examples/mnist_mlp.py:create_model", "harness loop (determinism on)",
                "harness loop (determinism off)", "(auto), shared order, fused (aggregate)",
                "(auto), own order, batched (aggregate)", "harness --replicas=4 (auto), own order, grouped (aggregate)",
                "--model=examples/mnist_mlp.py:create_model --replicas=4 (auto), own order, grouped (aggregate)",
                "the update's bound: Adam over", "memory added (peak RSS)",
                "the full MNIST-MLP study (60,000 examples x 50 epochs, 120 trials of 12 conditions)",
                "keras model.fit + FingerprintCallback(every='epoch')",
                "keras model.fit + FingerprintCallback(every='step')", "ms a step (",
                "keras model.fit, one thread (--intra_op_threads=1 --inter_op_threads=1)",
                "harness loop (determinism on), one thread (--intra_op_threads=1 --inter_op_threads=1)",
                "2 processes x one thread at once: harness loop (determinism on) (aggregate)",
                "2 processes x one thread at once: --replicas=4 (auto), own order, grouped (aggregate)",
                "with --replicas=auto --workers=2 --intra_op_threads=1 --inter_op_threads=1",
                "on one thread each: the harness loop", "--workers=2 (two worker processes)",
                "--executor=ray (2 nodes x 1 CPU on the loopback)", "Ray's overhead per trial"):
        assert row in result.stdout
    record = json.loads((tmp_path / "speed.json").read_text())
    assert schema_errors(record) == []
    # The Ray row: the same study on a real two-node cluster and with two workers, twice each, with an interval.
    ray = record["ray"]
    assert len(ray["ray_s"]) == len(ray["workers_s"]) == 2 and ray["ci95"][0] <= ray["ratio"] <= ray["ci95"][1]
    # Every ratio divides by the fastest plain fit of each run (TF's pools or one thread), which it names; over
    # the runs it is the geometric mean of the runs' ratios, with an interval.
    assert record["runs"] == 2
    fits = {r["name"]: r["runs_examples_per_s"] for r in record["rows"]
            if r["name"].startswith("keras model.fit") and "FingerprintCallback" not in r["name"]}
    fastest = [max(rates[run] for rates in fits.values()) for run in range(2)]
    for row in record["rows"]:
        rates = row["runs_examples_per_s"]
        assert row["vs_keras"] == pytest.approx(np.sqrt(rates[0] / fastest[0] * rates[1] / fastest[1]))
        assert row["vs_keras_ci95"][0] <= row["vs_keras"] <= row["vs_keras_ci95"][1]
        assert row["examples_per_s"] == pytest.approx(np.median(rates))
    assert all(r["vs_keras"] <= 1.0 for r in record["rows"] if r["name"] in fits)
    assert "`vs fastest fit` divides by the fastest keras fit of each run (run 1: keras model.fit" in result.stdout
    assert len(record["keras_reference"]["runs_names"]) == 2
    assert "2 runs of every row, one after another" in result.stdout
    together = [r for r in record["rows"] if r.get("workers") == 2]
    assert [r.get("path") for r in together] == [None, "fused", "batched", "grouped"]
    assert record["full_study"]["parallel"]["workers"] == 2
    assert record["memory"]["user"]["trial_mib"] >= 0 and record["memory"]["builtin"]["peak_mib"] > 0


def test_auto_replicas_fill_half_the_last_level_cache_in_groups_of_even_size(monkeypatch):
    """The digits MLP has 9,610 weights: 153,760 bytes of training state a replica (weight, two Adam
    moments, gradient). Half a cache of 7 such states gives K=7, and 10 repeats become two groups of 5."""
    from harness.platform import environment
    from harness.trial import vectorized

    config = load_benchmark("digits_mlp", **SMALL)
    state = 9_610 * vectorized.STATE_BYTES_PER_WEIGHT
    for cache, expected in ((2 * 7 * state, 7), (2 * 7 * state - 1, 6), (state, 1), (1 << 40, 16)):
        monkeypatch.setattr(environment, "last_level_cache_bytes", lambda cache=cache: cache)
        assert vectorized.auto_replicas(config) == expected
    assert vectorized.auto_replicas(config.replace(model="cnn")) == 1
    monkeypatch.setattr(environment, "last_level_cache_bytes", lambda: 2 * 7 * state)
    specs = study_runner.plan(config, 0, SeedSet.from_base(0), conditions.parse_conditions("init"), 10, "s",
                              replicas="auto")
    assert [s.group for s in specs] == [0] * 5 + [1] * 5 and {s.config.replicas for s in specs} == {5}


def test_the_last_level_cache_is_read_from_sysfs(tmp_path):
    from harness.platform.environment import last_level_cache_bytes

    for index, size in (("index0", "32K"), ("index2", "1024K"), ("index3", "32768K")):
        (tmp_path / index).mkdir()
        (tmp_path / index / "size").write_text(size + "\n")
    assert last_level_cache_bytes(str(tmp_path)) == 32 * 1024**2
    assert last_level_cache_bytes(str(tmp_path / "missing")) is None
