"""`python -m harness.bench_speed` (or `make speed`): the harness loop against Keras `fit`, side by side.

The original question's workload (MNIST-shaped synthetic data, Dense128-relu,
Dropout(0.8), Dense10, Adam, batch 32), measured in one run:
- Keras `model.fit` of the model in `examples/mnist_mlp.py` (a user's file), seeded, with op
  determinism: what users would otherwise run; and with `harness.keras.FingerprintCallback`
  fingerprinting the weights every epoch and every step (its cost);
- the harness loop on that same user model (`--model=examples/mnist_mlp.py:create_model`), and that MLP with
  its own train_step (`examples/own_train_step.py`), which the harness trains with its own Keras fit;
- the harness loop on the built-in MLP with op determinism on and off;
- vectorized replicas (K trials in one graph) for each --replicas value and the K a study would
  choose here (auto), on both stacked paths: replicas that share one batch order (fused first
  layer: `control`, `kernels`, `init`, `dropout`, `bit`) and replicas that each have their own
  (one matmul per replica: `shuffle`, `split`, `all`);
- grouped replicas (a model per replica, harness/trial/grouped.py) at auto's K: the built-in MLP
  as its `order` condition trains, and the user's model with a shared order and with its own;
each as steady-state examples/s (the first epoch or loop call, which traces, is
excluded; the median of the rest), its ratio to Keras, and its share of this
machine's dense-matmul peak, measured in the same run. Then the memory one
trial adds to a process (peak RSS, in a fresh process each), for the built-in
MLP and the user model. With ray installed, a study (--ray_study: a small one,
or make bench's) on a local two-node Ray cluster against the same study with
--workers=2 (the study's seconds both ways, and Ray's overhead per trial).
Then the update's bound: Adam's update alone over the largest group's weights,
timed, and the rate no group of that
size can pass here even with its matmuls at the measured peak. Last, the time
the classic MNIST-MLP study would take at full size (60,000 examples, 50
epochs, 10 repeats of each default condition) at these rates, one by one and
with --replicas=auto.
Writes OUTPUT_DIR/speed.json.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags

from harness import cli
from harness.errors import UsageError
from harness.flags import value_or
from harness.platform import environment
from harness.schema import SPEED_FILE, SPEED_SCHEMA, SUMMARY_FILE, TRIALS_FILE
from harness.studies.records import read_records, utc_timestamp, write_json
from harness.table import format_table
from harness.trial.config import TrialConfig, load_benchmark
from harness.trial.seeds import SeedSet

FLAGS = flags.FLAGS
# The shared flags bench_speed reads, which its --help lists with its own.
for _name in ("epochs", "replicas", "output_dir"):
    flags.declare_key_flag(_name)
flags.DEFINE_integer("examples", 16384, "Training examples per epoch (of the 60,000 synthetic ones).", lower_bound=256)
flags.DEFINE_integer("runs", 3, "Times every row is measured, one run of all rows after another: each row's "
                     "`vs fastest fit` is the geometric mean of its runs' ratios with a 95% t-interval (1: one "
                     "sample, no interval).", lower_bound=1)
flags.DEFINE_bool("doctor", True, "Also time harness.doctor --verify on the two example scripts (about a minute).")
flags.DEFINE_bool("ray", True, "Also time a study on a local two-node Ray cluster against --workers=2 (skipped where "
                  "ray is not installed).")
flags.DEFINE_enum("ray_study", "small", ["small", "default"], "The study the Ray row times: `small` (12 trials on one "
                  "thread each, about five minutes) or `default` (make bench's study, about six minutes a run here).")
flags.DEFINE_enum("memory_probe", None, ["builtin", "user"], "Internal: run one trial of this model in this process "
                  "and print the memory it added.")
flags.DEFINE_bool("rates_probe", False, "Internal: with one intra-op and one inter-op thread, measure the rows "
                  "named on stdin, one per line, and print each one's examples/s.")

# The user's model of the comparison: the examples' MLP, as a user's file; and that MLP with its own
# train_step, which trains in its own Keras fit (train.trainer_of).
USER_MODEL = "examples/mnist_mlp.py:create_model"
OWN_STEP_MODEL = "examples/own_train_step.py:create_model"
REPLICA_PATHS = {"fused": "shared order, fused", "batched": "own order, batched",
                 "grouped": "own order, grouped"}
# One-thread rows the probes measure (rates_probe): Keras fit, a trial alone, and auto's groups per path.
PROBE_ROWS = ("fit", "alone", "fused", "batched", "grouped")
# At most this many one-thread processes at once: a study's --workers on this machine's cores.
MAX_PARALLEL_WORKERS = 4
# The classic MNIST-MLP study at full size, whose duration is estimated from the measured rates.
FULL_STUDY_EXAMPLES, FULL_STUDY_EPOCHS, FULL_STUDY_REPEATS = 60_000, 50, 10

def model_flops_per_example(inputs: int = 784, hidden: int = 128, outputs: int = 10) -> int:
    """Training FLOPs per example of the MLP: forward matmuls x3 (forward, and backward for weights and inputs)."""
    return 3 * 2 * (inputs * hidden + hidden * outputs)


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """This machine's dense float32 matmul rate: the best of several timed runs of a large matmul."""
    import tensorflow as tf

    a = tf.random.stateless_uniform([size, size], seed=[1, 2])
    b = tf.random.stateless_uniform([size, size], seed=[3, 4])

    @tf.function
    def work(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        # Each product feeds the next: identical independent matmuls would be merged into one by
        # Grappler's common-subexpression elimination, and the "peak" would be 10x too high.
        for _ in range(repeats):
            a = tf.matmul(a, b) * (1.0 / size)
        return a

    work(a, b).numpy()  # trace and warm up
    best = 0.0
    for _ in range(3):
        began = time.perf_counter()
        work(a, b).numpy()
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - began))
    return best


def keras_fit_examples_per_s(x: np.ndarray, y: np.ndarray, epochs: int, fingerprints: str | None = None) -> float:
    """Keras `fit` of the examples' MLP, seeded, with op determinism: the median epoch after the first.
    `fingerprints` ("epoch" or "step") adds `harness.keras.FingerprintCallback`, inside the timed epoch."""
    import keras
    import tensorflow as tf

    from harness.trial import user_code

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    model = user_code.resolve_function(USER_MODEL, "model")()
    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.began)

    callbacks: list[Any] = [EpochTimer()]
    if fingerprints:
        from harness.keras import FingerprintCallback

        trace = Path(tempfile.mkdtemp(prefix="harness-speed-")) / "trace.jsonl"
        # Before the timer in the list: its epoch-end work falls inside the timed epoch.
        callbacks.insert(0, FingerprintCallback(trace, every=fingerprints))
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0, callbacks=callbacks)
    return len(y) / float(np.median(seconds[1:]))


def weights_fingerprint_ms() -> float:
    """What FingerprintCallback does once an epoch (or step): fingerprint every weight of the examples' MLP
    (784 inputs). Timed alone, the median of 50: the callback's whole cost, which fit-to-fit noise hides."""
    from harness.keras import FingerprintCallback
    from harness.trial import user_code

    model = user_code.resolve_function(USER_MODEL, "model")()
    model.build((None, 784))
    callback = FingerprintCallback("unused.jsonl")
    callback.set_model(model)
    times = []
    for _ in range(50):
        began = time.perf_counter()
        callback._row("epoch", 0, {"loss": 0.5})
        times.append(time.perf_counter() - began)
    return float(np.median(times) * 1e3)


def measure(examples: int, epochs: int, replica_counts: list[int | str]) -> dict[str, Any]:
    """Every configuration's figures, measured in this process one after another."""
    from harness.trial import grouped
    from harness.trial.datasets import load_dataset
    from harness.trial.train import run_trial
    from harness.trial.vectorized import auto_replicas

    peak = matmul_peak_flops()
    flops = model_flops_per_example()
    data = load_dataset("synthetic")
    warm_up_fit(data, examples)
    rows = [{"name": f"keras model.fit of {USER_MODEL} (determinism on)",
             "examples_per_s": keras_fit_examples_per_s(data.train_x[:examples], data.train_y[:examples], epochs)}]
    for every in ("epoch", "step"):
        rows.append({"name": f"keras model.fit + FingerprintCallback(every={every!r})", "examples_per_s":
                     keras_fit_examples_per_s(data.train_x[:examples], data.train_y[:examples], epochs, every)})
    base = loop_config(examples, epochs)
    user = run_trial(_user_config(base), SeedSet.from_base(0))
    rows.append({"name": f"harness loop on --model={USER_MODEL}", "examples_per_s": user.timing["examples_per_s"]})
    own_step = run_trial(_user_config(base).replace(model=OWN_STEP_MODEL), SeedSet.from_base(0))
    assert own_step.model["trainer"] == "keras_fit", own_step.status
    rows.append({"name": f"--model={OWN_STEP_MODEL} (its own train_step: its own Keras fit)",
                 "examples_per_s": own_step.timing["examples_per_s"]})
    # In-process fixed cost of a trial: data split, model, pipeline, and the first (tracing) call
    # less its steps' steady time. The process's first trial also warms up TF's runtime.
    fixed = [_fixed_cost(run_trial(base, SeedSet.from_base(i)).timing, base.steps_per_loop) for i in range(3)]
    for on in (True, False):
        result = run_trial(base.replace(determinism=on), SeedSet.from_base(0))
        rows.append({"name": f"harness loop (determinism {'on' if on else 'off'})",
                     "examples_per_s": result.timing["examples_per_s"]})
    auto = auto_replicas(base)
    # The K a study picks (auto) is always measured: the full study's estimate is at it.
    counts = sorted({auto, *(int(k) for k in replica_counts if k != "auto")})
    for k in counts:
        label = f"--replicas={k}" + (" (auto)" if k == auto else "")
        for path in ("fused", "batched"):
            rows.append({"name": f"harness {label}, {REPLICA_PATHS[path]} (aggregate)", "path": path,
                         "replicas": k, "auto": k == auto, "examples_per_s": group_rate(base, path, k)})
    # The grouped path at its auto K: the built-in MLP as the `order` condition trains it, and the user's model.
    k = grouped.MAX_AUTO_REPLICAS
    rows.append({"name": f"harness --replicas={k} (auto), {REPLICA_PATHS['grouped']} (aggregate)", "path": "grouped",
                 "replicas": k, "auto": True, "examples_per_s": group_rate(base, "grouped", k)})
    for order, own_order in (("shared order", False), ("own order", True)):
        rows.append({"name": f"--model={USER_MODEL} --replicas={k} (auto), {order}, grouped (aggregate)",
                     "examples_per_s": group_rate(_user_config(base), "grouped", k, own_order)})
    # Where the OS does not say how many cores this process may use: no parallel rows.
    workers = min(MAX_PARALLEL_WORKERS, environment.static_environment()["cpu"]["usable_cores"] or 1)
    rows += one_thread_rows(examples, epochs, workers)
    reference = fastest_fit(rows)
    for row in rows:
        row["vs_keras"] = row["examples_per_s"] / reference["examples_per_s"]
        row["share_of_matmul_peak"] = row["examples_per_s"] * flops / peak
    return {"rows": rows, "matmul_peak_gflops": peak / 1e9, "model_flops_per_example": flops,
            "full_study": full_study_minutes(rows, workers),
            "keras_reference": {"name": reference["name"], "examples_per_s": reference["examples_per_s"]},
            "update_bound": update_bound(base, max(counts), peak, flops, rows, reference["examples_per_s"]),
            "weights_fingerprint_ms": weights_fingerprint_ms(),
            "first_trial_fixed_cost_s": fixed[0], "fixed_trial_cost_s": float(np.median(fixed[1:]))}


def over_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One set of figures from several runs of `measure`: each row's examples/s is its median run, and its
    `vs fastest fit` the geometric mean of its runs' ratios (each run's row over that run's fastest fit, so a
    machine that speeds up between runs moves both) with a 95% t-interval (`stats.paired_ratio`); one run
    gives the ratio alone. The other figures are the first run's."""
    from harness.analysis import stats

    figures = dict(runs[0])
    rows = []
    for number, row in enumerate(runs[0]["rows"]):
        rates = [run["rows"][number]["examples_per_s"] for run in runs]
        references = [run["keras_reference"]["examples_per_s"] for run in runs]
        # rate / reference rate = reference's seconds per example over the row's.
        ratio = stats.paired_ratio([1 / r for r in references], [1 / r for r in rates])
        median = float(np.median(rates))
        rows.append({**row, "examples_per_s": median, "runs_examples_per_s": rates, "vs_keras": ratio["ratio"],
                     "vs_keras_ci95": ratio["ci95"],
                     "share_of_matmul_peak": median * runs[0]["model_flops_per_example"]
                     / (runs[0]["matmul_peak_gflops"] * 1e9)})
    figures["rows"] = rows
    figures["runs"] = len(runs)
    references = [run["keras_reference"]["examples_per_s"] for run in runs]
    names = [run["keras_reference"]["name"] for run in runs]
    # The fastest fit can differ from run to run (TF's pools in one, one thread in another): each is named.
    figures["keras_reference"] = {"name": max(set(names), key=names.count), "runs_names": names,
                                  "examples_per_s": float(np.median(references))}
    return figures


def _ratio_text(row: dict[str, Any]) -> str:
    interval = row.get("vs_keras_ci95")
    return f"{row['vs_keras']:.2f}x [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else f"{row['vs_keras']:.2f}x"


def fastest_fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest plain Keras `fit` row of the run (TF's thread pools or one thread): every `vs keras fit`
    ratio divides by it, so no ratio flatters the harness against a slower way to run `fit` (measured: fit on
    one thread 16.2k examples/s where TF's pools gave 9.4k)."""
    fits = [r for r in rows if r["name"].startswith("keras model.fit") and "FingerprintCallback" not in r["name"]]
    return max(fits, key=lambda r: r["examples_per_s"])


def loop_config(examples: int, epochs: int) -> TrialConfig:
    """The built-in MLP's benchmark config of every harness row."""
    # At least a few loop calls per epoch, so the steady state (every call after the first) has samples.
    steps_per_loop = max(1, min(128, examples // 32 // 4))
    return load_benchmark("synthetic_mlp", epochs=epochs, max_train_examples=examples, steps_per_loop=steps_per_loop)


def replica_seeds(k: int, own_order: bool) -> list[SeedSet]:
    """K replicas' seeds: each its own init and dropout, and with `own_order` its own batch order."""
    return [SeedSet.from_base(0).replace(init=i, dropout=i, **({"shuffle": i} if own_order else {}))
            for i in range(k)]


def group_rate(config: TrialConfig, path: str, k: int, own_order: bool | None = None) -> float:
    """Examples/s of a group of K replicas of `config` on `path` (fused, batched: stacked; grouped), each
    with its own batch order unless they share one (fused; `own_order` says for grouped)."""
    from harness.trial import grouped
    from harness.trial.vectorized import run_replicas

    run = grouped.run_grouped if path == "grouped" else run_replicas
    own_order = path != "fused" if own_order is None else own_order
    results = run([config.replace(replicas=k)] * k, replica_seeds(k, own_order))
    assert results[0].outputs["vectorized"]["path"] == path
    return results[0].timing["examples_per_s"]


def warm_up_fit(data, examples: int) -> None:
    """A first fit in a process runs slower (Keras and TF warming up): one is run and discarded, so the
    measured fits compare fairly with the other rows."""
    warm_up = min(examples, 2048)
    keras_fit_examples_per_s(data.train_x[:warm_up], data.train_y[:warm_up], 2)


def probe_rate(name: str, examples: int, epochs: int) -> dict[str, Any]:
    """One of PROBE_ROWS in this process (rates_probe: one intra-op and one inter-op thread): its examples/s,
    and for a group its path and K (auto's, as a study picks it with these threads)."""
    from harness.trial import grouped
    from harness.trial.datasets import load_dataset
    from harness.trial.train import run_trial
    from harness.trial.vectorized import auto_replicas

    if name == "fit":
        data = load_dataset("synthetic")
        return {"examples_per_s": keras_fit_examples_per_s(data.train_x[:examples], data.train_y[:examples], epochs)}
    base = loop_config(examples, epochs).replace(intra_op_threads=1, inter_op_threads=1)
    if name == "alone":
        return {"examples_per_s": run_trial(base, SeedSet.from_base(0)).timing["examples_per_s"]}
    k = grouped.MAX_AUTO_REPLICAS if name == "grouped" else auto_replicas(base)
    return {"examples_per_s": group_rate(base, name, k), "path": name, "replicas": k}


def rates_probe(examples: int, epochs: int) -> None:
    """The probe process: warms up (a first fit and a first trial run slower), says so, then measures each
    row named on stdin and prints its figures as one JSON line."""
    from harness.platform import determinism
    from harness.trial.datasets import load_dataset

    determinism.set_thread_pools(1, 1)
    warm_up_fit(load_dataset("synthetic"), examples)
    probe_rate("alone", min(examples, 2048), 2)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(probe_rate(line.strip(), examples, epochs)), flush=True)


def one_thread_rows(examples: int, epochs: int, workers: int) -> list[dict[str, Any]]:
    """Rows with one intra-op and one inter-op thread, each in a probe process: Keras fit and a trial alone in
    one process, then `workers` processes at once, each a trial alone and auto's group per path (aggregate:
    their sum). Tiny models train faster on one thread than on TF's pools; a study gets the second set with
    --workers=N --intra_op_threads=1 --inter_op_threads=1."""
    flags_ = ["--rates_probe", f"--examples={examples}", f"--epochs={epochs}"]
    with tempfile.TemporaryDirectory() as scratch:
        logs = [open(Path(scratch) / f"probe{i}.log", "w+") for i in range(workers)]
        probes = [subprocess.Popen([sys.executable, "-m", "harness.bench_speed", *flags_], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=log, text=True) for log in logs]
        try:
            for probe, log in zip(probes, logs, strict=True):
                _probe_answer(probe, log)

            def ask(name: str, count: int) -> list[dict[str, Any]]:
                for probe in probes[:count]:  # all at once: each is timed under the others' load
                    with contextlib.suppress(BrokenPipeError):  # a dead probe is reported by _probe_answer
                        probe.stdin.write(name + "\n")
                        probe.stdin.flush()
                return [_probe_answer(probe, log) for probe, log in zip(probes[:count], logs, strict=False)]

            threads = "one thread (--intra_op_threads=1 --inter_op_threads=1)"
            rows = [{"name": f"keras model.fit, {threads}", "threads": 1, "workers": 1, **ask("fit", 1)[0]},
                    {"name": f"harness loop (determinism on), {threads}", "threads": 1, "workers": 1,
                     **ask("alone", 1)[0]}]
            if workers > 1:
                for name in PROBE_ROWS[1:]:
                    answers = ask(name, workers)
                    what = ("harness loop (determinism on)" if name == "alone" else
                            f"--replicas={answers[0]['replicas']} (auto), {REPLICA_PATHS[name]}")
                    rows.append({**answers[0], "name": f"{workers} processes x one thread at once: {what} (aggregate)",
                                 "threads": 1, "workers": workers,
                                 "examples_per_s": sum(a["examples_per_s"] for a in answers)})
            return rows
        finally:
            for probe in probes:
                with contextlib.suppress(BrokenPipeError):
                    probe.stdin.close()
                probe.wait()
            for log in logs:
                log.close()


def _probe_answer(probe: subprocess.Popen, log) -> dict[str, Any]:
    """The probe's next JSON line on stdout (other output skipped); one sentence if it died instead."""
    for line in probe.stdout:
        if line.startswith("{"):
            return json.loads(line)
    log.seek(0)
    last = [line for line in log.read().splitlines() if line.strip()][-1:]
    raise UsageError(f"a one-thread rates probe died: {last}")


def update_bound(base: TrialConfig, k: int, peak: float, flops: int, rows: list[dict[str, Any]],
                 keras_rate: float) -> dict[str, Any]:
    """What bounds a group of K: the harness's Adam update (ResourceApplyAdam, the kernel every trial uses,
    so its bits are the trial's) over K replicas' stacked weights, timed alone (the fastest of 30 steps).
    Every step reads and writes each weight and both moments, and takes a square root and a division per
    weight, whatever the batch: with the matmuls at the measured peak as well, the group cannot pass
    K x batch / (update + matmuls) examples/s."""
    import tensorflow as tf

    from harness.trial.datasets import dataset_of
    from harness.trial.models import build_model
    from harness.trial.train import Adam

    shapes = [v.shape for v in build_model(base, dataset_of(base), init_seed=0).trainable_variables]
    variables = [tf.Variable(tf.random.stateless_uniform([k, *shape], seed=[0, i])) for i, shape in enumerate(shapes)]
    gradients = [tf.random.stateless_normal([k, *shape], seed=[1, i]) * 1e-3 for i, shape in enumerate(shapes)]
    optimizer = Adam(variables, base.learning_rate)
    update = tf.function(lambda step: optimizer.apply(gradients, step))
    seconds = []
    for step in range(31):
        started = time.perf_counter()
        update(tf.constant(step, tf.int64))
        variables[-1][0, 0].numpy()  # waits for the update
        seconds.append(time.perf_counter() - started)
    update_s = min(seconds[1:])
    examples = k * base.batch_size
    bound = examples / (update_s + examples * flops / peak)
    reached = max(r["examples_per_s"] for r in rows if r.get("replicas") == k)
    return {"replicas": k, "weights": sum(int(np.prod(s)) for s in shapes) * k, "update_ms": update_s * 1e3,
            "examples_per_s": bound, "vs_keras": bound / keras_rate, "reached": reached / bound}


def full_study_minutes(rows: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Minutes the full MNIST-MLP study's training would take at the measured rates: every trial one by
    one, and with --replicas=auto, each trial on the path the study gives it (fused, batched, grouped, or
    alone where its condition cannot be grouped), at the rate measured for that path at auto's K; and so
    with `workers` one-thread workers, at the rates measured with that many probes at once (their
    aggregate: the workers share the study's groups). Per-trial set-up is left out: under a second against
    minutes of training."""
    conditions_, trials_by_path = _full_study_plan()
    trials = sum(trials_by_path.values())
    per_trial = FULL_STUDY_EXAMPLES * FULL_STUDY_EPOCHS

    def minutes(rate: dict[str, float]) -> float:  # rate: examples/s per path, "alone" included
        return sum(n * per_trial / rate[path] for path, n in trials_by_path.items() if n) / 60

    alone = next(r["examples_per_s"] for r in rows if r["name"] == "harness loop (determinism on)")
    rate = {"alone": alone, **{r["path"]: r["examples_per_s"] for r in rows if r.get("auto")}}
    figures = {"conditions": conditions_, "trials": trials, "trials_by_path": trials_by_path,
               "replicas": next(r["replicas"] for r in rows if r.get("auto") and r["path"] != "grouped"),
               "sequential_min": trials * per_trial / alone / 60, "vectorized_min": minutes(rate)}
    parallel = [r for r in rows if r.get("workers", 1) > 1]
    if parallel:
        rate = {r.get("path", "alone"): r["examples_per_s"] for r in parallel}
        figures["parallel"] = {"workers": workers, "threads": 1, "minutes": minutes(rate),
                               "replicas": next(r["replicas"] for r in parallel if r.get("path") == "fused")}
    return figures


def _full_study_plan() -> tuple[int, dict[str, int]]:
    """The full study as --replicas=auto plans it: its conditions, and its trials on each path."""
    from harness.studies import conditions, study_runner, unit_of_work
    from harness.trial.datasets import shares_batches

    base = load_benchmark("synthetic_mlp", epochs=FULL_STUDY_EPOCHS)
    chosen = conditions.default_conditions(base)
    specs = study_runner.plan(base, 0, SeedSet.from_base(0), chosen, FULL_STUDY_REPEATS, "estimate", replicas="auto")
    groups: dict[tuple[str, int | None], list[Any]] = {}
    for spec in specs:
        groups.setdefault((spec.condition, spec.group), []).append(spec)
    trials_by_path = {"fused": 0, "batched": 0, "grouped": 0, "alone": 0}
    for (_, group), members in groups.items():
        config, seed_sets = members[0].config, [m.seeds for m in members]
        path = ("alone" if group is None else "grouped" if unit_of_work.replica_path(config) == "grouped"
                else "fused" if shares_batches(config, seed_sets) else "batched")
        trials_by_path[path] += len(members)
    return len(chosen), trials_by_path


def _user_config(base: TrialConfig) -> TrialConfig:
    """The built-in MLP's study settings with the user's model in its place."""
    return base.replace(model=USER_MODEL, learning_rate=None)


def memory_of_one_trial(which: str, examples: int, epochs: int) -> dict[str, float]:
    """Peak RSS one trial adds to a process that has TF, Keras and the data loaded and has run one
    trial of the model already (MiB)."""
    import keras  # noqa: F401  Imported first for both models: the trial's own cost is what is compared.

    from harness.trial.datasets import load_dataset
    from harness.trial.train import run_trial

    load_dataset("synthetic")
    base = load_benchmark("synthetic_mlp", epochs=epochs, max_train_examples=examples)
    config = _user_config(base) if which == "user" else base
    # A study's first trial also starts TF's runtime (thread pools, kernel caches), whatever the model:
    # it runs before the measured one, which costs what every further trial of a study costs.
    run_trial(config, SeedSet.from_base(1))
    before = _rss_mib("VmRSS")
    # The peak so far (data generation) would hide the trial's own: Linux resets the peak to the
    # current RSS when "5" is written to clear_refs.
    Path("/proc/self/clear_refs").write_text("5")
    result = run_trial(config, SeedSet.from_base(0))
    after = _rss_mib("VmHWM")
    if result.status["code"] != "ok":
        raise UsageError(f"the {which} trial failed: {result.status['message']}")
    return {"process_before_mib": before, "peak_mib": after, "trial_mib": after - before}


def _rss_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise UsageError(f"/proc/self/status has no {field}; the memory probe needs Linux")


def measure_memory(examples: int, epochs: int) -> dict[str, dict[str, float]]:
    """Each model's one-trial memory, each in a fresh process (peak RSS only ever grows)."""
    figures = {}
    for which in ("builtin", "user"):
        probe = subprocess.run([sys.executable, "-m", "harness.bench_speed", f"--memory_probe={which}",
                                f"--examples={examples}", f"--epochs={epochs}"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise UsageError(f"the {which} memory probe failed: {probe.stderr.strip().splitlines()[-1:]}")
        figures[which] = json.loads(probe.stdout.strip().splitlines()[-1])
    return figures


DOCTOR_EXAMPLES = ("examples/mnist_mlp.py", "examples/optuna_regression.py")


def doctor_seconds() -> tuple[dict[str, float], dict[str, int]]:
    """Wall time of `harness.doctor --verify` on each example script, as a user runs it (goal: < 2 min), and how
    many runs of the script it took (each observed run writes its own JSON lines)."""
    times, runs = {}, {}
    for script in DOCTOR_EXAMPLES:
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            result = subprocess.run([sys.executable, "-m", "harness.doctor", "--verify", f"--output_dir={scratch}",
                                     script], capture_output=True, text=True)
            runs[script] = len(list(Path(scratch).glob("*.jsonl")))
        if result.returncode != 0:
            raise UsageError(f"harness.doctor on {script} failed: {result.stderr.strip().splitlines()[-1:]}")
        times[script] = time.perf_counter() - began
    return times, runs


def _fixed_cost(timing: dict[str, Any], steps_per_loop: int) -> float:
    return timing["setup_s"] + timing["first_call_s"] - timing["steady_step_ms"]["median"] / 1e3 * steps_per_loop


# The studies the Ray row times both ways (--ray_study). `small`: 12 trials one at a time (each a Ray task), on
# one thread each, as the two workers of --workers=2 train. `default`: the study `make bench` runs (its
# benchmark, 10 repeats of every condition, replica groups, the cost of determinism), as a user would.
RAY_STUDIES = {
    "small": ["--benchmark=digits_mlp", "--conditions=control,init,all", "--repeats=4", "--epochs=5", "--replicas=1",
              "--cost_blocks=0", "--intra_op_threads=1", "--inter_op_threads=1"],
    "default": ["--repeats=10"],
}


def ray_against_workers(runs: int, study: str) -> dict[str, Any] | None:
    """The same study (RAY_STUDIES[study]) on a real two-node Ray cluster on this machine (two raylets, one CPU
    each) and with --workers=2, alternately, `runs` times each: the study's own seconds (summary wall_s) both
    ways, their ratio (a paired 95% t-interval over runs), and Ray's overhead per trial (task dispatch, a
    worker process's start per process environment, the record's return). None where ray is not installed."""
    try:
        from ray import cluster_utils
    except ImportError:
        return None
    from harness.analysis import stats

    # Its nodes are this process's (stopped by their PIDs, not `ray stop`), and their workers run at its priority,
    # not Ray's nice 15, under which a loaded machine barely runs the trials (docs/scale-out.md).
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "_system_config": {"worker_niceness": 0}})
    seconds: dict[str, list[float]] = {"ray": [], "workers": []}
    trials = 0
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        with tempfile.TemporaryDirectory(prefix="harness-speed-ray-") as scratch:
            for run in range(runs):
                # Alternate which goes first, so a machine that speeds up or slows down moves both.
                for how in (("ray", "workers") if run % 2 == 0 else ("workers", "ray")):
                    where = ["--executor=ray", f"--ray_address={cluster.address}"] if how == "ray" else ["--workers=2"]
                    directory = Path(scratch) / f"{how}-{run}"
                    done = subprocess.run([sys.executable, "-m", "harness.bench", *RAY_STUDIES[study], *where,
                                           f"--output_dir={directory}"], capture_output=True, text=True)
                    if done.returncode != 0:
                        raise UsageError(f"the Ray speed study ({how}) failed: "
                                         f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
                    seconds[how].append(json.loads((directory / SUMMARY_FILE).read_text())["wall_s"])
                    trials = len(read_records(directory / TRIALS_FILE))
    finally:
        cluster.shutdown()
    ratio = stats.paired_ratio(seconds["ray"], seconds["workers"]) if runs > 1 else None
    # Two CPUs work at once either way: the extra wall time, times two, is CPU time Ray adds; per trial.
    overhead = [(r - w) * 2 / trials for r, w in zip(seconds["ray"], seconds["workers"], strict=True)]
    return {"study": " ".join(RAY_STUDIES[study]), "trials": trials, "runs": runs, "ray_s": seconds["ray"],
            "workers_s": seconds["workers"],
            "ratio": ratio["ratio"] if ratio else seconds["ray"][0] / seconds["workers"][0],
            "ci95": ratio["ci95"] if ratio else None, "overhead_s_per_trial": float(np.median(overhead))}


def main(argv: list[str]) -> int:
    del argv
    from harness.studies.study_runner import parse_replicas

    counts = [parse_replicas(k) for k in value_or("replicas", "4,auto,16").split(",")]
    epochs, output_dir = value_or("epochs", 3), Path(value_or("output_dir", "results/speed"))
    if epochs < 2:
        raise UsageError(f"--epochs must be at least 2 here (the first is a warm-up), got {epochs}")
    if FLAGS.rates_probe:
        rates_probe(FLAGS.examples, epochs)
        return 0
    if FLAGS.memory_probe:
        print(json.dumps(memory_of_one_trial(FLAGS.memory_probe, FLAGS.examples, epochs)))
        return 0
    figures = over_runs([measure(FLAGS.examples, epochs, counts) for _ in range(FLAGS.runs)])
    figures["memory"] = measure_memory(FLAGS.examples, epochs)
    if FLAGS.doctor:
        figures["doctor_s"], doctor_runs = doctor_seconds()
    ray_figures = ray_against_workers(FLAGS.runs, FLAGS.ray_study) if FLAGS.ray else None
    if ray_figures:
        figures["ray"] = ray_figures
    env = environment.capture()
    print(f"{env['cpu']['model']}, {env['cpu']['usable_cores']} cores; TensorFlow {env['tensorflow']['version']}; "
          f"{FLAGS.examples} examples x {epochs} epochs, batch 32, first epoch/call excluded")
    print(format_table(["configuration", "examples/s", "vs fastest fit [95% CI]", "of matmul peak"],
                       [[r["name"], f"{r['examples_per_s']:,.0f}", _ratio_text(r), f"{r['share_of_matmul_peak']:.1%}"]
                        for r in figures["rows"]]))
    reference = figures["keras_reference"]
    runs = f"{FLAGS.runs} runs of every row, one after another; examples/s: the median run; each ratio: the " \
        "geometric mean of its runs' ratios, 95% t-interval" if FLAGS.runs > 1 else "one run: one sample, no interval"
    fastest = "; ".join(f"run {number}: {name}" for number, name in enumerate(reference.get("runs_names") or
                                                                           [reference["name"]], start=1))
    print(f"`vs fastest fit` divides by the fastest keras fit of each run ({fastest}), median "
          f"{reference['examples_per_s']:,.0f} examples/s ({runs})")
    print(f"matmul peak {figures['matmul_peak_gflops']:.1f} GFLOP/s (2048x2048 float32); model "
          f"{figures['model_flops_per_example']:,} training FLOPs/example")
    print(f"fixed in-process cost per trial (setup and tracing): {figures['fixed_trial_cost_s']:.2f} s; "
          f"the process's first trial: {figures['first_trial_fixed_cost_s']:.2f} s (TF runtime warm-up)")
    fit_step_ms = 32e3 / figures["rows"][0]["examples_per_s"]
    for row in figures["rows"][1:3]:  # the callback's cost, against plain fit's step
        extra = 32e3 / row["examples_per_s"] - fit_step_ms
        print(f"{row['name']}: {extra:+.3f} ms a step ({extra / fit_step_ms:+.1%} of fit's {fit_step_ms:.3f} ms step)")
    steps_per_epoch = -(-FLAGS.examples // 32)
    cost = figures["weights_fingerprint_ms"]
    print(f"FingerprintCallback's own work, timed alone: {cost:.3f} ms per fingerprint of the weights; once an "
          f"epoch ({steps_per_epoch} steps) that is {cost / steps_per_epoch / fit_step_ms:.3%} of fit's step time, "
          f"once a step {cost / fit_step_ms:.1%} (plus fit waiting for every step: the row above)")
    bound = figures["update_bound"]
    print(f"the update's bound: Adam over {bound['replicas']} replicas' weights ({bound['weights']:,}), timed alone, "
          f"{bound['update_ms']:.2f} ms a step; with the matmuls at the peak as well, a group of "
          f"{bound['replicas']} cannot pass {bound['examples_per_s']:,.0f} examples/s here "
          f"({bound['vs_keras']:.2f}x the fastest keras fit); the best row of {bound['replicas']} reached "
          f"{bound['reached']:.0%} of that")
    study = figures["full_study"]
    print(f"the full MNIST-MLP study ({FULL_STUDY_EXAMPLES:,} examples x {FULL_STUDY_EPOCHS} epochs, {study['trials']} "
          f"trials of {study['conditions']} conditions), training time at these rates: "
          f"{study['sequential_min']:.0f} min one by one, {study['vectorized_min']:.0f} min with "
          f"--replicas=auto ({study['replicas']} on the stacked paths; trials "
          + ", ".join(f"{path} {n}" for path, n in study["trials_by_path"].items()) + ")")
    if "parallel" in study:
        parallel = study["parallel"]
        print(f"  and {parallel['minutes']:.0f} min with --replicas=auto --workers={parallel['workers']} "
              f"--intra_op_threads=1 --inter_op_threads=1 (the rows of {parallel['workers']} processes at once)")
    by_name = {r["name"]: r for r in figures["rows"]}
    pools_fit = figures["rows"][0]["examples_per_s"]  # fit with TF's thread pools, as the harness loop's row
    one_thread = [r for r in figures["rows"] if r.get("threads") == 1 and r["workers"] == 1]
    if len(one_thread) == 2:
        fit, loop = one_thread
        print(f"on one thread each: the harness loop {loop['examples_per_s']:,.0f} examples/s, keras fit "
              f"{fit['examples_per_s']:,.0f}: {loop['examples_per_s'] / fit['examples_per_s']:.2f}x "
              f"(TF's thread pools: {by_name['harness loop (determinism on)']['examples_per_s'] / pools_fit:.2f}x)")
    memory = figures["memory"]
    print(format_table(["one trial in a fresh process", "memory added (peak RSS)", "vs built-in MLP"],
                       [[f"built-in MLP ({name})" if name == "builtin" else f"--model={USER_MODEL}",
                         f"{memory[name]['trial_mib']:.0f} MiB",
                         f"{memory[name]['trial_mib'] / memory['builtin']['trial_mib']:.2f}x"
                         if memory["builtin"]["trial_mib"] > 0 else "-"]
                        for name in ("builtin", "user")]))
    if ray_figures:
        interval = ray_figures["ci95"]
        print(format_table(
            [f"python -m harness.bench {ray_figures['study']} ({ray_figures['trials']} trials)",
             "the study's seconds (median)",
             "vs --workers=2 [95% CI]"],
            [["--workers=2 (two worker processes)", f"{np.median(ray_figures['workers_s']):.1f}", "1"],
             ["--executor=ray (2 nodes x 1 CPU on the loopback)", f"{np.median(ray_figures['ray_s']):.1f}",
              f"{ray_figures['ratio']:.2f}x" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval
                                                else " (one sample, no interval)")]]))
        print(f"Ray's overhead per trial (the task's dispatch, a worker process's start and TensorFlow's import "
              f"once per process environment, the record's return): {ray_figures['overhead_s_per_trial']:.1f} s of a "
              f"CPU (median of {ray_figures['runs']} paired runs)")
    elif FLAGS.ray:
        print("no Ray row: ray is not installed (pip install .[ray])")
    for script, seconds in figures.get("doctor_s", {}).items():
        print(f"python -m harness.doctor --verify {script}: {seconds:.0f} s (one sample; {doctor_runs[script]} runs "
              "of the script)")
    record = {"schema": SPEED_SCHEMA, "created_at": utc_timestamp(), "examples": FLAGS.examples,
              "epochs": epochs, "environment": env, **figures}
    write_json(output_dir / SPEED_FILE, record)
    print(f"wrote {output_dir / SPEED_FILE}")
    return 0


if __name__ == "__main__":
    cli.run(main, writes_records=True)
