"""Many trials: conditions, the plan and its run (resumable, in worker processes), records, the per-example
predictions beside them (per_example.py) and storage, and the study's cost record (determinism_cost.py)."""

# Where trials (and re-run objectives) run: all in this process, or each in a fresh one. Here, not in
# study_runner, so the flag that takes it (harness/flags.py) is defined without importing TensorFlow.
ISOLATIONS = ("inprocess", "process")
