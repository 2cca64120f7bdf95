"""TensorBoard curves: each ok trial of a study gets its own run directory, with its loss curve as recorded."""

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
