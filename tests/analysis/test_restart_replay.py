"""Restart replay against planted ground truth: checkpoints that leave out a known state (the test hook
HARNESS_RESUME_OMIT, trial/resume.py) must be found at the first resumed step with that state named; a whole one
must replay the uninterrupted run bit for bit. Each trial resumes in a real fresh process."""

from __future__ import annotations

import pytest
from conftest import user_config

from harness.analysis import restart_replay

pytestmark = pytest.mark.slow  # each trial trains, checkpoints, and starts a second process (about 20 s)


def resumed(config, name="resume"):
    from harness.studies.conditions import condition
    from harness.studies.unit_of_work import TrialSpec, train_unit
    from harness.trial.seeds import SeedSet

    trial_config, seeds = condition(name).trial(config, 0, SeedSet.from_base(0), 0, [])
    result = train_unit([TrialSpec("test", name, 0, trial_config, seeds)])[0]
    assert result.status["code"] == "ok", result.status
    return result


def test_a_checkpoint_without_the_optimizer_state_is_found_at_the_first_resumed_step(small_config, monkeypatch):
    from harness.trial.datasets import dataset_of, split_pool, steps_per_epoch
    from harness.trial.seeds import SeedSet

    monkeypatch.setenv("HARNESS_RESUME_OMIT", "optimizer")  # planted: Adam's m and v slots left out
    config = small_config.replace(epochs=4)
    said = resumed(config).outputs["resume"]
    split = split_pool(dataset_of(config), SeedSet.from_base(0), config)
    # Ground truth: the middle epoch's end, counted here from the split, is the first step a missing slot changes.
    first = 2 * steps_per_epoch(len(split.train_y), config.batch_size)
    assert said["epoch"] == 2 and said["step"] == first
    assert said["replays"] is False and said["first_step"] == first
    assert said["stage"] == "update (optimizer)"
    assert "optimizer state" in said["missed"]
    assert "the checkpoint missed the optimizer state" in said["message"]


def test_a_checkpoint_without_the_dropout_generator_names_the_dropout_layer(user_files, monkeypatch):
    monkeypatch.setenv("HARNESS_RESUME_OMIT", "dropout#0")  # planted: the Dropout layer's SeedGenerator state
    said = resumed(user_config(user_files, epochs=2)).outputs["resume"]
    assert said["replays"] is False and said["first_step"] == said["step"] > 0
    assert said["stage"] == "forward pass (loss)"
    assert said["missed"] == "the random generator state of layer `dropout` (Dropout)"


@pytest.mark.parametrize("which", ["builtin", "user"])
def test_a_whole_checkpoint_replays_the_uninterrupted_run_bit_for_bit(which, small_config, user_files):
    from harness.trial.seeds import SeedSet
    from harness.trial.train import run_trial

    config = small_config if which == "builtin" else user_config(user_files, epochs=2)
    result = resumed(config)
    said = result.outputs["resume"]
    assert said["replays"] is True and said["missed"] is None, said
    # Checked against a control trial trained uninterrupted in this process, not against the verdict itself.
    control = run_trial(config, SeedSet.from_base(0))
    for name in ("weights_sha256", "predictions_sha256", "loss_trace_sha256"):
        assert result.fingerprints[name] == control.fingerprints[name], name
    assert said["checkpoint"]["optimizer state"] > 0
    if which == "user":
        assert said["checkpoint"]["random generator states"] == 2  # the Dropout layer's and Keras's global one


def _fit(resumed_by="BackupAndRestore", final="w", iteration="i16", dropout="d16", first_batch=(1, 2)):
    """A keras_probe fit record of the doctor's restart replay, as much of it as the verdict reads."""
    return {"resumed_by": resumed_by, "final_weights": final,
            "resume_state": {"weights": {"0:sequential/dense/kernel": "k"},
                             "optimizer state": {"0:adam/iteration": iteration, "2:adam/dense_kernel_momentum": "m"},
                             "random generator states": {"dropout#0": dropout}},
            "steps": [{"batch": list(first_batch), "weights": final}]}


def test_a_script_resume_names_each_state_the_resumed_run_lacks():
    found = restart_replay.script_verdict(_fit(), _fit(final="v", iteration="i0", dropout="d0", first_batch=(3, 4)),
                                          2)
    assert (found["replays"], found["first_differing_step"]) == (False, 1)
    assert found["missed"] == ["the optimizer's iteration count", "the random generator state of layer `dropout` "
                               "(its SeedGenerator: the masks it draws)",
                               "the data order of epoch 3 (its first batch holds other examples)"]
    said = restart_replay.script_verdict(_fit(resumed_by="harness"), _fit(resumed_by="harness"), 2)["message"]
    assert said == ("Interrupted at the end of epoch 2 and resumed in a fresh process by the harness's resume of fit "
                    "(the script has no BackupAndRestore): weights, optimizer state and every random generator's "
                    "state restored from its checkpoint, the run replays the uninterrupted one: its final weights "
                    "are equal bit for bit.")
