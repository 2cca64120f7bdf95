"""Many trials: conditions, the plan and its run (resumable, in worker processes), records, the per-example
predictions beside them (per_example.py) and storage, and the study's cost record (determinism_cost.py)."""

import dataclasses
from collections.abc import Iterable
from typing import Any

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
    `gpus_per_trial` GPUs and the custom Ray `resources` ((name, amount) pairs) that mark one kind of node."""

    name: str = "local"
    address: str | None = None
    gpus_per_trial: float = 0.0
    resources: tuple[tuple[str, float], ...] = ()

    def check(self, configs: Iterable[Any]) -> None:
        """Refuses, in one sentence and before a program writes anything, trials of `configs` (TrialConfig)
        this executor cannot run. On Ray: a model or data handed over as a Python object, an unreachable
        cluster, one without the GPUs or resources asked for."""
        if self.name == "ray":
            from harness.studies import ray_executor  # Ray: imported only where it runs

            ray_executor.check_cluster(self, configs)
