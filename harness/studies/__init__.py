"""Many trials: conditions, the plan and its run (resumable, in worker processes), records, the per-example
predictions beside them (per_example.py) and storage, and the study's cost record (determinism_cost.py)."""

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from harness.errors import UsageError

# Where trials (and re-run objectives) run: all in this process, or each in a fresh one. Here, not in
# study_runner, so the flag that takes it (harness/flags.py) is defined without importing TensorFlow.
ISOLATIONS = ("inprocess", "process")

# Where a study's trials run: this machine (this process and worker processes: --isolation, --workers) or a
# Ray cluster (harness/studies/ray_executor.py).
EXECUTORS = ("local", "ray")
# The most GPUs one Ray task may ask for (--ray_gpus_per_trial, harness.study's ray_gpus_per_trial).
MAX_GPUS_PER_TRIAL = 64.0
# Trials a count may ask for per condition (bench's --repeats, harness.study's repeats) or per configuration
# (--seeds, tune's --seeds_per_trial): every trial is planned before the first one runs, so an absurd count would
# fill memory before anything is said. At a second a trial this many take hours; more is a typo.
MAX_TRIALS_EACH = 10_000
# Worker processes a study may run at once (bench's --workers, harness.study's workers): each imports TensorFlow
# (about 0.5 GB), so more than this would exhaust any machine's memory before a trial ran, not spread them.
MAX_WORKERS = 1024
# The longest time limit a trial may be given (bench's --trial_timeout, harness.study's trial_timeout): a week.
MAX_TRIAL_TIMEOUT_S = 7 * 24 * 3600
# The limit of a trial of the built-in models on built-in data (study_runner.time_limit_of), which runs no code of
# the user's: past an hour it is stuck (a hung GPU, a deadlock), not slow; the built-in benchmarks' trials take
# seconds to minutes here.
DEFAULT_TRIAL_TIMEOUT_S = 3600


def refuse_ray_settings_without_ray(executor: str, given: Sequence[str], choosing_ray: str) -> None:
    """One sentence when Ray's settings (`given`, named as the caller's user spells them) come without the Ray
    executor (`choosing_ray`: how that user chooses it): ignored, they would let the study run here instead."""
    if executor != "ray" and given:
        one = len(given) == 1
        raise UsageError(f"{' and '.join(given)} {'is' if one else 'are'} for {choosing_ray}; add it, or leave "
                         f"{'it' if one else 'them'} out")


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
