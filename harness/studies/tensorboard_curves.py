"""TensorBoard curves per trial, so users can overlay runs of a condition."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tensorflow as tf


def trial_logdir(root: Path, record: dict[str, Any]) -> Path:
    condition = re.sub(r"[^A-Za-z0-9_.-]+", "_", record["condition"])
    return root / condition / f"repeat{record['repeat']:03d}_{record['trial_key'][:8]}"


def write_trial(root: Path, record: dict[str, Any]) -> None:
    """Per-epoch train loss, and final test loss and accuracy, of one trial."""
    metrics = record["metrics"]
    if record["status"]["code"] != "ok":
        return
    writer = tf.summary.create_file_writer(str(trial_logdir(root, record)))
    with writer.as_default():
        curve = metrics.get("epoch_train_loss") or []
        for epoch, loss in enumerate(curve, start=1):
            if loss is not None:
                tf.summary.scalar("train_loss", loss, step=epoch)
        for name in ("test_loss", "test_accuracy", "validation_loss", "validation_accuracy"):
            if metrics.get(name) is not None:
                tf.summary.scalar(name, metrics[name], step=len(curve))
    writer.close()
