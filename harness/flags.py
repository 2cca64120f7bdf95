"""Every flag that more than one program takes, defined once.

Each program states its own default, where it has one, in the help below and in its docstring,
and applies it with `value_or`.
"""

from __future__ import annotations

import math
from typing import Any

from absl import flags

from harness.errors import UsageError
from harness.studies import (
    EXECUTORS,
    ISOLATIONS,
    MAX_GPUS_PER_TRIAL,
    MAX_TRIALS_EACH,
    Executor,
    refuse_ray_settings_without_ray,
)
from harness.studies.conditions import parse_conditions

FLAGS = flags.FLAGS
HELP_TITLE = "shared with other programs"  # this module's group in a program's --help (cli.help_text)


def define_float(name: str, default: float | None, help_text: str, **bounds: float) -> None:
    """`flags.DEFINE_float` for a flag that must be a finite number, refused as it is parsed: absl reads `nan`
    and `inf` as floats, and a NaN passes any lower_bound and upper_bound (every comparison with it is false).
    Every float flag is defined through it but gate's thresholds, which gate_rules checks (from --rules too)."""
    flags.DEFINE_float(name, default, help_text, **bounds)
    flags.register_validator(name, lambda value: value is None or math.isfinite(value),
                             message="must be a finite number")


def _check_conditions(text: str | None) -> bool:
    """--conditions checked as it is parsed, so every program that takes it refuses an unknown one before any
    work (isolation_cost passes it on to the studies it starts)."""
    if text is not None:
        try:
            parse_conditions(text)
        except UsageError as error:
            raise flags.ValidationError(str(error)) from None
    return True

flags.DEFINE_string("output_dir", None, "Where the program writes. Defaults: bench results/BENCHMARK; tune "
                    "results/tune/BENCHMARK; reeval results/reeval/BENCHMARK/ID and compare_configs "
                    "results/compare/BENCHMARK/ID (ID names the configs and seeds); diverge results/diverge; "
                    "bench_speed results/speed; doctor results/doctor/SCRIPT; report and merge: the input "
                    "directory; worker: required.")
# An empty value would be the current directory: a study's files strewn where the command happened to run.
flags.register_validator("output_dir", lambda value: value is None or bool(value.strip()),
                         message="names no directory (leave the flag out for the program's default)")
flags.DEFINE_string("input_dir", None, "The study directory to read: report's holds trials.jsonl and summary.json; "
                    "merge's holds shard-*-of-* directories (local or a gfile URL).")
flags.DEFINE_string("replicas", None, "Vectorized replicas: train K trials at a time in one graph, each bit for bit "
                    "the trial alone (a number; auto: for the built-in MLPs as many as fit half the CPU's last-level "
                    "cache, up to 16, for other models (yours) 4, or 1 past 500,000 weights; in groups of even size, "
                    "and 1 with --isolation=process, --workers or shards; 1 trains them one by one). bench: each "
                    "condition's repeats, default auto; tune, reeval, compare_configs: a configuration's seeds, "
                    "default auto; bench_speed: the counts to measure, default 4,auto,16. XLA (env:xla=1), "
                    "--strategy and --trainer=keras_fit train one by one, and bench says why.")
flags.DEFINE_integer("seeds", 20, "Seeds each configuration is evaluated over, paired across configurations "
                     "(reeval, compare_configs).", lower_bound=2, upper_bound=MAX_TRIALS_EACH)
flags.DEFINE_string("conditions", None,
                    "Comma-separated conditions: control, kernels, init, shuffle, dropout, augment, split, "
                    "all, bit, order, resume, env:threads=N, env:onednn=0|1, env:xla=0|1, env:load=0|1. bench's "
                    "default: all of them but resume, less augment without --augment, split without a validation "
                    "share, order for your own Keras model, and env:xla=1 under --trainer=keras_fit; "
                    "isolation_cost's: control,init.")
flags.register_validator("conditions", _check_conditions)
flags.DEFINE_integer("repeats", None, "Trials per condition (bench: 10; isolation_cost: 5).", lower_bound=1,
                     upper_bound=MAX_TRIALS_EACH)
flags.DEFINE_enum("isolation", "inprocess", list(ISOLATIONS),
                  "inprocess: trials (bench) or calls of your objective (reeval --objective) share this process; "
                  "process: a fresh process for each. A trial's bits are the same either way; an objective's "
                  "module-level code (data made at import) runs once per process.")
flags.DEFINE_enum("executor", "local", list(EXECUTORS),
                  "Where trials run. local: this process and worker processes on this machine (--isolation, "
                  "--workers). ray: each trial (a replica group whole) a Ray task in a fresh process on the Ray "
                  "cluster at --ray_address (docs/scale-out.md); records are written here, by this process.")
flags.DEFINE_string("ray_address", None, "The Ray cluster --executor=ray runs trials on: HOST:PORT of its head "
                    "(ray start --head prints it). Default: $RAY_ADDRESS, else a Ray instance started on this "
                    "machine for this run.")
define_float("ray_gpus_per_trial", 0.0, "GPUs each Ray task asks for with --executor=ray (1 on GPU nodes: one "
             "trial per GPU; 0: CPU only).", lower_bound=0.0, upper_bound=MAX_GPUS_PER_TRIAL)
flags.DEFINE_string("ray_resources", None, "Custom Ray resources each task asks for with --executor=ray, as "
                    "NAME=AMOUNT,...: every trial runs on nodes that offer them, so a study's trials share one kind "
                    "of machine (e.g. accelerator_type:A100=0.001, which Ray sets on A100 nodes, or a label you "
                    "give nodes with ray start --resources).")
# The flags executor_from_flags reads: each program that takes --executor declares them its key flags.
RAY_FLAGS = ("executor", "ray_address", "ray_gpus_per_trial", "ray_resources")
# doctor and diverge: try the fix each proposes, and say whether it works.
flags.DEFINE_boolean("verify", False, "Try the proposed fix and say whether it works: the doctor makes its change in a "
                     "copy of the script and runs it; diverge re-runs both sides with the cause's remedy (XLA off, op "
                     "determinism, the same environment) and says whether the runs then agree.")
flags.DEFINE_integer("epochs", None, "Training epochs (default: the benchmark's; bench_speed: 3, the first a warm-up).")
# This module defines no flag past here: a flag `define_float` defines is the calling module's (its group in
# that program's --help), not this one's.
flags.disclaim_key_flags()


def executor_from_flags() -> Executor:
    """Where this program's trials run, from --executor and the --ray_ flags."""
    refuse_ray_settings_without_ray(FLAGS.executor, [f"--{name}" for name in RAY_FLAGS[1:] if FLAGS[name].present],
                                    "--executor=ray")
    from harness.studies import ray_executor  # its parsing only: Ray itself loads where a study runs on it

    return Executor(FLAGS.executor, FLAGS.ray_address or None, FLAGS.ray_gpus_per_trial,
                    ray_executor.parse_resources(FLAGS.ray_resources or ""))


def value_or(name: str, default: Any) -> Any:
    """The flag's value, or this program's default when it was not given."""
    value = FLAGS[name].value
    return default if value is None else value
