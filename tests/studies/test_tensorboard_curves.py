"""TensorBoard curves: each ok trial of a study gets its own run directory, with its loss curve as recorded."""

import pytest
import tensorflow as tf

from harness.schema import TRIALS_FILE
from harness.studies import tensorboard_curves
from harness.studies.records import read_records


def _scalars(logdir):
    """(tag, step, value) of every scalar in a run directory's event files, as TensorBoard reads them."""
    found = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.append((value.tag, event.step, float(tf.make_ndarray(value.tensor))))
    return found


def test_a_trials_curve_is_written_under_its_condition_and_repeat(small_study, tmp_path):
    record = next(r for r in read_records(small_study / TRIALS_FILE) if r["condition"] == "init")
    tensorboard_curves.write_trial(tmp_path, record)
    logdir = tensorboard_curves.trial_logdir(tmp_path, record)
    assert logdir.parent.name == "init" and logdir.name.startswith(f"repeat{record['repeat']:03d}_")
    scalars = _scalars(logdir)
    curve = record["metrics"]["epoch_train_loss"]
    assert [(step, round(v, 5)) for tag, step, v in scalars if tag == "train_loss"] == \
        [(epoch, round(loss, 5)) for epoch, loss in enumerate(curve, start=1)]
    final = {tag: (step, value) for tag, step, value in scalars if tag != "train_loss"}
    assert final["test_accuracy"][0] == len(curve)
    assert abs(final["test_accuracy"][1] - record["metrics"]["test_accuracy"]) < 1e-6


def test_a_failed_trial_writes_no_curve(small_study, tmp_path):
    record = dict(next(iter(read_records(small_study / TRIALS_FILE))), status={"code": "nan_loss", "message": "x"})
    tensorboard_curves.write_trial(tmp_path, record)
    assert not any(tmp_path.iterdir())


def test_a_full_disk_while_writing_a_curve_is_an_os_error_and_leaves_no_curve_cut_short(small_study, tmp_path,
                                                                                          monkeypatch):
    """TF's event writer fails on a full disk with a ResourceExhaustedError (as below, from a 64 KiB tmpfs), which
    was a traceback and a curve cut short; it is the OSError it is, which the programs say in one sentence
    (`...: No space left on device; records written before this are kept.`), and the curve is left out."""
    import errno

    record = next(r for r in read_records(small_study / TRIALS_FILE) if r["status"]["code"] == "ok")
    logdir = tensorboard_curves.trial_logdir(tmp_path, record)

    def disk_full(*args, **kwargs):
        [events] = logdir.glob("events.out.tfevents.*")
        raise tf.errors.ResourceExhaustedError(None, None, (
            "{{function_node __wrapped__WriteSummary_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
            f"{events}; No space left on device\n\tFailed to flush 11 events to {events}\n\tCould not flush events "
            "file. [Op:WriteSummary]"))

    monkeypatch.setattr(tf.summary, "scalar", disk_full)
    with pytest.raises(OSError) as raised:
        tensorboard_curves.write_trial(tmp_path, record)
    assert (raised.value.errno, raised.value.strerror) == (errno.ENOSPC, "No space left on device")
    assert raised.value.filename.startswith(f"{logdir}/events.out.tfevents.")
    assert not list(logdir.glob("events.out.tfevents.*"))
