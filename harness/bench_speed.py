"""`python -m harness.bench_speed` (or `make speed`): the harness loop against Keras `fit`, side by side.

The original question's workload (MNIST-shaped synthetic data, Dense128-relu,
Dropout(0.8), Dense10, Adam, batch 32), measured in one run:
- Keras `model.fit` with the same model, seeded, with op determinism: what users would otherwise run;
- the harness loop with op determinism on and off;
- vectorized replicas (K trials in one graph) for each --replicas value;
each as steady-state examples/s (the first epoch or loop call, which traces, is
excluded; the median of the rest), its ratio to Keras, and its share of this
machine's dense-matmul peak, measured in the same run. Writes OUTPUT_DIR/speed.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from absl import flags

from harness import cli, environment
from harness.config import load_benchmark
from harness.errors import UsageError
from harness.records import utc_timestamp, write_json
from harness.seeds import SeedSet
from harness.table import format_table

SPEED_SCHEMA = "harness.speed/1"
FLAGS = flags.FLAGS
flags.DEFINE_integer("examples", 16384, "Training examples per epoch (of the 60,000 synthetic ones).", lower_bound=256)
flags.DEFINE_integer("epochs", 3, "Epochs per measurement; the first is warm-up.", lower_bound=2)
flags.DEFINE_list("replicas", ["4", "16"], "Vectorized replica counts to measure.")
flags.DEFINE_string("output_dir", "results/speed", "Where speed.json goes.")


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


def keras_fit_examples_per_s(x: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Keras `fit` of the same model, seeded, with op determinism: the median epoch after the first."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.8),
                              keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.began)

    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0, callbacks=[EpochTimer()])
    return len(y) / float(np.median(seconds[1:]))


def measure(examples: int, epochs: int, replica_counts: list[int]) -> dict[str, Any]:
    """Every configuration's figures, measured in this process one after another."""
    from harness.datasets import load_dataset
    from harness.replicas import run_replicas
    from harness.train import run_trial

    peak = matmul_peak_flops()
    flops = model_flops_per_example()
    data = load_dataset("synthetic")
    rows = [{"name": "keras model.fit (determinism on)",
             "examples_per_s": keras_fit_examples_per_s(data.train_x[:examples], data.train_y[:examples], epochs)}]
    # At least a few loop calls per epoch, so the steady state (every call after the first) has samples.
    steps_per_loop = max(1, min(128, examples // 32 // 4))
    base = load_benchmark("synthetic_mlp", epochs=epochs, max_train_examples=examples, steps_per_loop=steps_per_loop)
    # In-process fixed cost of a trial: data split, model, pipeline, and the first (tracing) call
    # less its steps' steady time. The process's first trial also warms up TF's runtime.
    fixed = [_fixed_cost(run_trial(base, SeedSet.from_base(i)).timing, base.steps_per_loop) for i in range(3)]
    for on in (True, False):
        result = run_trial(base.replace(determinism=on), SeedSet.from_base(0))
        rows.append({"name": f"harness loop (determinism {'on' if on else 'off'})",
                     "examples_per_s": result.timing["examples_per_s"]})
    for k in replica_counts:
        seeds = [SeedSet.from_base(0).replace(init=i, shuffle=i, dropout=i) for i in range(k)]
        results = run_replicas([base.replace(replicas=k)] * k, seeds)
        rows.append({"name": f"harness --replicas={k} (aggregate)",
                     "examples_per_s": results[0].timing["examples_per_s"]})
    keras_rate = rows[0]["examples_per_s"]
    for row in rows:
        row["vs_keras"] = row["examples_per_s"] / keras_rate
        row["share_of_matmul_peak"] = row["examples_per_s"] * flops / peak
    return {"rows": rows, "matmul_peak_gflops": peak / 1e9, "model_flops_per_example": flops,
            "first_trial_fixed_cost_s": fixed[0], "fixed_trial_cost_s": float(np.median(fixed[1:]))}


def _fixed_cost(timing: dict[str, Any], steps_per_loop: int) -> float:
    return timing["setup_s"] + timing["first_call_s"] - timing["steady_step_ms"]["median"] / 1e3 * steps_per_loop


def main(argv: list[str]) -> int:
    del argv
    try:
        counts = [int(k) for k in FLAGS.replicas]
    except ValueError:
        raise UsageError(f"--replicas takes whole numbers, got {','.join(FLAGS.replicas)}") from None
    if any(k < 1 for k in counts):
        raise UsageError("--replicas values must be at least 1")
    figures = measure(FLAGS.examples, FLAGS.epochs, counts)
    env = environment.capture()
    print(f"{env['cpu']['model']}, {env['cpu']['usable_cores']} cores; TensorFlow {env['tensorflow']['version']}; "
          f"{FLAGS.examples} examples x {FLAGS.epochs} epochs, batch 32, first epoch/call excluded")
    print(format_table(["configuration", "examples/s", "vs keras fit", "of matmul peak"],
                       [[r["name"], f"{r['examples_per_s']:,.0f}", f"{r['vs_keras']:.2f}x",
                         f"{r['share_of_matmul_peak']:.1%}"] for r in figures["rows"]]))
    print(f"matmul peak {figures['matmul_peak_gflops']:.1f} GFLOP/s (2048x2048 float32); model "
          f"{figures['model_flops_per_example']:,} training FLOPs/example")
    print(f"fixed in-process cost per trial (setup and tracing): {figures['fixed_trial_cost_s']:.2f} s; "
          f"the process's first trial: {figures['first_trial_fixed_cost_s']:.2f} s (TF runtime warm-up)")
    record = {"schema": SPEED_SCHEMA, "created_at": utc_timestamp(), "examples": FLAGS.examples,
              "epochs": FLAGS.epochs, "environment": env, **figures}
    write_json(Path(FLAGS.output_dir) / "speed.json", record)
    print(f"wrote {FLAGS.output_dir}/speed.json")
    return 0


if __name__ == "__main__":
    cli.run(main)
