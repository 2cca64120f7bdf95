"""Determinism's cost, measured: two settings of one real train step timed in interleaved blocks."""

import pytest
from conftest import SMALL, USER_MODEL

from harness.platform import determinism
from harness.trial import cost
from harness.trial.config import load_benchmark, user_model_config
from harness.trial.seeds import SeedSet


def test_blocks_alternate_a_b_then_b_a_so_a_steady_drift_cancels():
    order = []

    def setting(name):
        return cost.Setting(name, lambda: order.append(f"enter {name}"), lambda n: order.append(f"{name} x{n}"))

    a_seconds, b_seconds = cost.interleaved_seconds(setting("A"), setting("B"), blocks=4, steps=7)
    assert [step for step in order if " x" in step] == ["A x7", "B x7", "B x7", "A x7", "A x7", "B x7", "B x7",
                                                         "A x7"]
    assert order[:2] == ["enter A", "A x7"]  # each block runs under its own setting
    assert len(a_seconds) == len(b_seconds) == 4 and min(a_seconds + b_seconds) > 0


@pytest.mark.parametrize("found", [True, False])
def test_a_real_train_step_is_timed_in_blocks_and_op_determinism_is_left_as_found(found, monkeypatch):
    from harness.trial import train

    built = []  # each unit builds its own model: the spread between builds is what one model's blocks leave out
    build = train.build_trainable
    monkeypatch.setattr(train, "build_trainable", lambda *args: built.append(build(*args)) or built[-1])
    config = load_benchmark("digits_mlp", **SMALL)
    determinism.set_op_determinism(found)
    measured = cost.measure(config, SeedSet.from_base(0), blocks=8, xla=found)
    assert determinism.op_determinism_enabled() is found
    assert len(built) == cost.UNITS == 3 and len({id(model) for model in built}) == 3
    components = measured["components"]
    assert set(components) == {"op_determinism", "tf_data_determinism", *(["xla"] if found else [])}
    for component in components.values():
        assert component["measured"], component
        assert len(component["units"]) == cost.UNITS
        for unit in component["units"]:
            assert len(unit["a_seconds"]) == len(unit["b_seconds"]) == 8 and unit["steps_per_block"] >= 4
    assert (components["op_determinism"]["a"], components["op_determinism"]["b"]) == (
        "op determinism off", "op determinism on")
    # On this CPU no kernel changes, but TensorFlow traces the softmax cross-entropy otherwise under op
    # determinism: a deterministic composite (with an UnsortedSegmentSum) in place of the fused op.
    ops = {row["op"]: row for row in measured["ops_that_pay"]["ops"]}
    assert [op for op, row in ops.items() if not row["traced_on"]] == ["SparseSoftmaxCrossEntropyWithLogits"]
    assert ops["SparseSoftmaxCrossEntropyWithLogits"]["off_ms_per_step"] > 0
    assert ops["UnsortedSegmentSum"]["traced_on"] and not ops["UnsortedSegmentSum"]["traced_off"]
    assert all(row["traced_on"] != row["traced_off"] for row in ops.values())


def test_the_profiler_lists_each_op_of_the_step_with_its_time_per_step_in_both_settings():
    """The GPU path, run on the CPU's ops: no CPU kernel changes under op determinism, so the test names the op
    to list (MatMul, which oneDNN runs as _MklMatMul) and the place ("Host")."""
    from harness.trial import train
    from harness.trial.datasets import split_pool

    config = load_benchmark("digits_mlp", **SMALL).replace(determinism=True)
    seeds = SeedSet.from_base(0)
    dataset = train.prepare(config)
    split = split_pool(dataset, seeds, config)
    trainable = train.build_trainable(config, dataset, seeds)
    batches = cost._cached_batches(config, seeds, split)  # noqa: SLF001  the measurement's own batches
    off, on = (cost._step_setting(name, trainable, batches, False, enabled)  # noqa: SLF001
               for name, enabled in (("off", False), ("on", True)))
    for setting in (off, on):
        setting.enter()
        setting.run(4)  # traced in its setting before profiling, as the measurement warms them
    listed = cost.ops_that_pay(off, on, 8, kinds=("Host",), listed=lambda op: op == "MatMul")
    assert [row["op"] for row in listed["ops"]] == ["MatMul"] and listed["note"] is None
    row = listed["ops"][0]
    assert row["off_ms_per_step"] > 0 and row["on_ms_per_step"] > 0
    # Looking for a GPU's ops on a CPU: the traced changes are listed, with no time on a device.
    on_device = cost.ops_that_pay(off, on, 8)["ops"]
    assert "SparseSoftmaxCrossEntropyWithLogits" in {row["op"] for row in on_device}
    assert all(row["off_ms_per_step"] is None and row["on_ms_per_step"] is None for row in on_device)


def test_a_step_that_op_determinism_leaves_alone_has_nothing_to_list():
    """The regression model's loss is a mean squared error: the same ops in both settings, and on a CPU the
    same kernels, so the note says there is nothing to list, and why."""
    config = load_benchmark("random_regression", epochs=1)
    listed = cost.measure(config, SeedSet.from_base(0), blocks=8)["ops_that_pay"]
    assert listed["ops"] == [] and listed["note"] == (
        "no op of the train step changes under op determinism here (the GPU kernels it changes, cuDNN algorithm "
        "choice and atomics, do not run on a CPU)")


def test_a_model_trained_by_its_own_keras_fit_is_not_timed_and_says_why(tmp_path):
    path = tmp_path / "user_model.py"
    path.write_text(USER_MODEL)
    config = user_model_config(model=f"{path}:create_model", dataset="digits", trainer="keras_fit", epochs=1,
                               max_train_examples=200)
    measured = cost.measure(config, SeedSet.from_base(0), blocks=8)
    assert measured["components"]["op_determinism"] == {
        "measured": False, "a": "op determinism off", "b": "op determinism on",
        "reason": "the model trains through its own Keras fit (--trainer=keras_fit), which the harness cannot "
                  "time in blocks"}
    assert measured["components"]["tf_data_determinism"]["measured"]


def test_a_measurement_that_fails_says_why_and_never_stops_the_study(monkeypatch):
    from harness.trial import train

    def broken_build(*_):
        raise ValueError("the model cannot be built twice\nsecond line")

    monkeypatch.setattr(train, "build_trainable", broken_build)
    determinism.set_op_determinism(False)
    measured = cost.measure(load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0), blocks=8, xla=True)
    assert determinism.op_determinism_enabled() is False
    assert measured["ops_that_pay"] is None
    for name in ("op_determinism", "tf_data_determinism", "xla"):
        assert measured["components"][name]["measured"] is False
        assert measured["components"][name]["reason"] == "ValueError: the model cannot be built twice"
