"""Every flag that more than one program takes, defined once.

Each program states its own default, where it has one, in the help below and in its docstring,
and applies it with `value_or`.
"""

from __future__ import annotations

from typing import Any

from absl import flags

from harness.studies import ISOLATIONS

FLAGS = flags.FLAGS

flags.DEFINE_string("output_dir", None, "Where the program writes. Defaults: bench results/BENCHMARK; tune "
                    "results/tune/BENCHMARK; reeval results/reeval/BENCHMARK/ID and compare_configs "
                    "results/compare/BENCHMARK/ID (ID names the configs and seeds); diverge results/diverge; "
                    "bench_speed results/speed; doctor results/doctor/SCRIPT; report and merge: the input "
                    "directory; worker: required.")
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
                     "(reeval, compare_configs).", lower_bound=2)
flags.DEFINE_string("conditions", None,
                    "Comma-separated conditions: control, kernels, init, shuffle, dropout, augment, split, "
                    "all, bit, order, env:threads=N, env:onednn=0|1, env:xla=0|1, env:load=0|1. bench's default: all "
                    "of them, less augment without --augment, split without a validation share, and order for your "
                    "own Keras model; isolation_cost's: control,init.")
flags.DEFINE_integer("repeats", None, "Trials per condition (bench: 10; isolation_cost: 5).", lower_bound=1)
flags.DEFINE_enum("isolation", "inprocess", list(ISOLATIONS),
                  "inprocess: trials (bench) or calls of your objective (reeval --objective) share this process; "
                  "process: a fresh process for each. A trial's bits are the same either way; an objective's "
                  "module-level code (data made at import) runs once per process.")
flags.DEFINE_integer("epochs", None, "Training epochs (default: the benchmark's; bench_speed: 3, the first a warm-up).")


def value_or(name: str, default: Any) -> Any:
    """The flag's value, or this program's default when it was not given."""
    value = FLAGS[name].value
    return default if value is None else value
