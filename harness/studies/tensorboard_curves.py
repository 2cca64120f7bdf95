"""TensorBoard curves per trial, so users can overlay runs of a condition."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from typing import Any

import tensorflow as tf

from harness.errors import first_line


def trial_logdir(root: Path, record: dict[str, Any]) -> Path:
    condition = re.sub(r"[^A-Za-z0-9_.-]+", "_", record["condition"])
    return root / condition / f"repeat{record['repeat']:03d}_{record['trial_key'][:8]}"


def write_trial(root: Path, record: dict[str, Any]) -> None:
    """Per-epoch train loss, and final test loss and accuracy, of one trial."""
    metrics = record["metrics"]
    if record["status"]["code"] != "ok":
        return
    logdir = trial_logdir(root, record)
    before = set(logdir.glob("events.out.tfevents.*"))
    try:
        writer = tf.summary.create_file_writer(str(logdir))
        with writer.as_default():
            curve = metrics.get("epoch_train_loss") or []
            for epoch, loss in enumerate(curve, start=1):
                if loss is not None:
                    tf.summary.scalar("train_loss", loss, step=epoch)
            for name in ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy"):
                if metrics.get(name) is not None:
                    tf.summary.scalar(name, metrics[name], step=len(curve))
        writer.close()
    except tf.errors.OpError as error:
        # A curve cut short would show in TensorBoard as if the trial had stopped there.
        for partial in set(logdir.glob("events.out.tfevents.*")) - before:
            partial.unlink(missing_ok=True)
        raise as_os_error(error) from None


def as_os_error(error: tf.errors.OpError) -> OSError:
    """A file error TF's event writer raised, as the OSError it is: the programs say an OSError in one sentence
    (`...events.out.tfevents...: No space left on device; records written before this are kept.`, cli.run),
    where a TF error would be a traceback. TF writes its message `PATH; REASON`, the reason strerror's words
    (ResourceExhaustedError for a full disk)."""
    where, _, reason = first_line(error.message).partition("; ")
    if not reason:
        return OSError(None, first_line(error.message))
    number = next((code for code in errno.errorcode if os.strerror(code) == reason), None)
    return OSError(number, reason, where)
