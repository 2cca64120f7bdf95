"""Many trials: conditions, the plan and its run (resumable, in worker processes), records, the per-example
predictions beside them (per_example.py) and storage, and the study's cost record (determinism_cost.py)."""

import dataclasses

# Where trials (and re-run objectives) run: all in this process, or each in a fresh one. Here, not in
# study_runner, so the flag that takes it (harness/flags.py) is defined without importing TensorFlow.
ISOLATIONS = ("inprocess", "process")

# Where a study's trials run: this machine (this process and worker processes: --isolation, --workers) or a
# Ray cluster (harness/studies/ray_executor.py).
EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class Executor:
    """Where a study's trials run. `local`: this process and worker processes on this machine. `ray`: Ray tasks
    on the cluster at `address` (None: $RAY_ADDRESS, else a Ray instance started here), each asking for
    `gpus_per_trial` GPUs."""

    name: str = "local"
    address: str | None = None
    gpus_per_trial: float = 0.0
