"""The resume condition's checkpoint (harness/trial/resume.py): what it holds, restored into a fresh build, and a
damaged one as one sentence. The fresh process and its verdict are tested in tests/analysis/test_restart_replay.py."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import user_config


def built(config):
    from harness.trial.datasets import dataset_of
    from harness.trial.seeds import SeedSet
    from harness.trial.train import build_trainable

    return build_trainable(config, dataset_of(config), SeedSet.from_base(0))


def test_the_checkpoint_holds_every_state_and_restores_it_into_a_fresh_build(user_files, tmp_path):
    from harness.trial import resume

    config = user_config(user_files)
    trainable = built(config)
    state = resume.training_state(trainable)
    assert sorted(state[resume.GENERATORS]) == ["dropout#0", "keras.random with no seed#0"]
    for variables in state.values():  # stand-ins for trained state: every variable moved off its built value
        for variable in variables.values():
            variable.assign(np.asarray(variable.numpy()) + np.ones(variable.shape, variable.numpy().dtype))
    resume.write_checkpoint(tmp_path / "checkpoint.npz", trainable, 7, np.zeros(7))
    saved = {part: {name: np.asarray(v.numpy()).copy() for name, v in variables.items()}
             for part, variables in state.items()}

    fresh = built(config)
    checkpoint = resume.read_checkpoint(tmp_path / "checkpoint.npz")
    assert int(checkpoint["step"]) == 7
    resume.restore(checkpoint, fresh, tmp_path / "checkpoint.npz")
    for part, variables in resume.training_state(fresh).items():
        for name, variable in variables.items():
            np.testing.assert_array_equal(variable.numpy(), saved[part][name], err_msg=f"{part} {name}")


def test_the_test_hook_leaves_the_named_state_out(small_config, tmp_path, monkeypatch):
    from harness.trial import resume

    monkeypatch.setenv(resume.OMIT_VARIABLE, "optimizer")
    left_out = resume.write_checkpoint(tmp_path / "checkpoint.npz", built(small_config), 3, np.zeros(3))
    assert len(left_out) == 8  # m and v of each of the MLP's two kernels and two biases
    checkpoint = resume.read_checkpoint(tmp_path / "checkpoint.npz")
    assert checkpoint["index"][resume.OPTIMIZER] == [] and len(checkpoint["index"][resume.WEIGHTS]) == 4


def test_a_damaged_checkpoint_is_one_sentence(small_config, tmp_path):
    from harness.trial import resume
    from harness.trial.train import TrialFailed

    path = tmp_path / "checkpoint.npz"
    resume.write_checkpoint(path, built(small_config), 3, np.zeros(3))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(TrialFailed) as failure:
        resume.read_checkpoint(path)
    assert str(failure.value) == (f"the resume checkpoint {path} is damaged (BadZipFile), so the trial cannot "
                                  "resume from it")
    with pytest.raises(TrialFailed, match="is missing, so the trial cannot resume"):
        resume.read_checkpoint(tmp_path / "none.npz")


def test_the_checkpoint_is_written_atomically(small_config, tmp_path, monkeypatch):
    from harness.trial import resume

    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"the previous checkpoint")

    def full_disk(fd):  # the disk fills as the new checkpoint's bytes are flushed
        raise OSError(28, "No space left on device")

    trainable = built(small_config)
    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        resume.write_checkpoint(path, trainable, 3, np.zeros(3))
    monkeypatch.undo()
    assert path.read_bytes() == b"the previous checkpoint"  # the old file whole, no half-written one
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


def test_resume_epoch_is_checked_in_one_sentence(small_config):
    from harness.errors import UsageError

    with pytest.raises(UsageError, match=r"^--resume_epoch must stop training before its last epoch: from 1 to 1 for "
                                         r"--epochs=2, got 2\.$"):
        small_config.replace(resume_epoch=2)
    with pytest.raises(UsageError, match=r"^--resume_epoch must be 0 \(the middle epoch\) or more, got -1\.$"):
        small_config.replace(resume_epoch=-1)
    assert "resume_epoch" not in small_config.as_dict()  # held only when set: other studies keep their ids
