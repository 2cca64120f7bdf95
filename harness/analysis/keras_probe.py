"""Observes an unmodified Keras script from the inside:
`python -m harness.keras_probe OUT STEPS SEED REFERENCE SCRIPT [ARGS]`.

Run by `harness.doctor`, once per run it compares. Before the script runs, it
wraps what decides a run's bits, without changing them:
- the seeding calls (`random.seed`, `np.random.seed`, `tf.random.set_seed`,
  `keras.utils.set_random_seed`), noting each with the script line that made it;
- the calls that put data in a random order (`np.random.permutation`, `shuffle`
  and `choice`, `random.shuffle` and `sample`, `np.random.default_rng`,
  `tf.data.Dataset.shuffle`, `tf.random.shuffle`) made by the user's code,
  each with its line and whether anything seeded it;
- `keras.Model.fit`: every fitted model gets a callback that records its initial
  weights, the state of every `keras.random.SeedGenerator` (dropout's
  randomness), and per step a fingerprint of the batch and of the weights after
  the step; the train step gets an in-graph fingerprint of its batch
  (integer arithmetic on the bits, which XLA compiles, as fit's default
  `jit_compile="auto"` does). After STEPS steps it stops that fit
  (`model.stop_training`): a diagnosis needs the first steps, not the whole run.

Then it runs the script as `__main__` with its own arguments. Every fit
becomes one JSON line in OUT. REFERENCE other than `-` is another run's OUT:
each fit stops at its first step (or initial weights) that differs from the
same fit there (`stopped` in its line says which): what follows a first
difference cannot tell where the runs parted. The script goes on to its next
fit, so each fit gets its own comparison. SEED other than `-` first calls
`keras.utils.set_random_seed(SEED)`: the fix the doctor proposes, verified;
`determinism` turns on op determinism instead, to check a kernel verdict.
"""

from __future__ import annotations

import json
import random
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

# In place of SEED: turn on op determinism before the script runs, seeding nothing.
DETERMINISM = "determinism"
# The calls that order data at random: the seeding calls that make each repeat (besides a seed argument
# of its own), and the position of that argument (counting `self` for a method). A NumPy Generator's own
# methods cannot be wrapped; its creation can.
NUMPY_SEEDING = ("np.random.seed", "keras.utils.set_random_seed")
PYTHON_SEEDING = ("random.seed", "keras.utils.set_random_seed")
TF_SEEDING = ("tf.random.set_seed", "keras.utils.set_random_seed")
DATA_CALLS = {
    "np.random.permutation": (NUMPY_SEEDING, None),
    "np.random.shuffle": (NUMPY_SEEDING, None),
    "np.random.choice": (NUMPY_SEEDING, None),
    "random.shuffle": (PYTHON_SEEDING, None),
    "random.sample": (PYTHON_SEEDING, None),
    "np.random.default_rng": ((), 0),
    "tf.data.Dataset.shuffle": (TF_SEEDING, 2),
    "tf.random.shuffle": (TF_SEEDING, 1),
}


class Probe:
    """What one run of the script did: its seeding calls, and each fit's fingerprints."""

    def __init__(self, out: Path, steps: int, script: Path, reference: list[dict[str, Any]] | None = None,
                 fix_seed: int | None = None) -> None:
        self.out, self.steps, self.script = out, steps, script.resolve()
        self.reference = reference
        # The doctor's fix, applied: keras.utils.set_random_seed(fix_seed) first, and that seed for every
        # np.random.default_rng the script makes without one (a Generator follows no global seed).
        self.fix_seed = fix_seed
        self.seeding: list[dict[str, Any]] = []
        self.data_calls: list[dict[str, Any]] = []
        self.fits = 0
        self._depth = 0  # keras.utils.set_random_seed calls the others: only the outermost call counts

    def user_line(self, depth: int = 2) -> str | None:
        """`train.py:12` when the caller `depth` frames up is the user's code (the script or a file beside
        it); None when it is Keras, TensorFlow or any other library."""
        frame = sys._getframe(depth)
        path = Path(frame.f_code.co_filename).resolve()
        directory = self.script.parent
        if path == self.script or (path.parent == directory and path.suffix == ".py"):
            return f"{path.name}:{frame.f_lineno}"
        return None

    def script_line(self) -> str | None:
        """`train.py:12`: the innermost frame of the user's script on the stack."""
        for frame in reversed(traceback.extract_stack()):
            if Path(frame.filename).resolve() == self.script:
                return f"{self.script.name}:{frame.lineno}"
        return None

    def wrap_seeding(self, owner: Any, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        probe = self

        def seeding(*args: Any, **kwargs: Any) -> Any:
            if probe._depth == 0:
                seed = args[0] if args else kwargs.get("seed")
                probe.seeding.append({"call": name, "seed": seed if isinstance(seed, (int, type(None))) else str(seed),
                                      "line": probe.script_line()})
            probe._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                probe._depth -= 1

        setattr(owner, attribute, seeding)

    def wrap_data_call(self, owner: Any, name: str) -> None:
        """Notes each call of a random data-ordering function made by the user's code: its line, and
        whether it repeats (a seed argument, or a seeding call before it that reaches it)."""
        attribute = name.rsplit(".", 1)[1]
        original = getattr(owner, attribute)
        seeding_calls, seed_position = DATA_CALLS[name]
        probe = self

        def data_call(*args: Any, **kwargs: Any) -> Any:
            line = probe.user_line()
            if line is not None:
                seed = kwargs.get("seed", args[seed_position] if seed_position is not None
                                  and len(args) > seed_position else None)
                seeded_by = [s for s in probe.seeding if s["call"] in seeding_calls]
                probe.data_calls.append({"call": name, "line": line, "seed": seed if isinstance(
                    seed, (int, type(None))) else str(seed), "seeded": seed is not None or bool(seeded_by)})
                if name == "np.random.default_rng" and seed is None and probe.fix_seed is not None:
                    return original(probe.fix_seed)
            return original(*args, **kwargs)

        setattr(owner, attribute, data_call)

    def reference_fit(self, index: int) -> dict[str, Any] | None:
        return self.reference[index] if self.reference is not None and index < len(self.reference) else None


def seed_generator_states(model: Any) -> dict[str, list[int]]:
    """Every SeedGenerator's state, by its layer's path: where Keras 3 keeps dropout's randomness."""
    from harness.trial.keras_model import seed_generators

    return {path: [int(v) for v in np.asarray(generator.state.value).reshape(-1)]
            for path, generator in seed_generators(model)}


def batch_fingerprint(data: Any) -> Any:
    """An in-graph fingerprint of a batch's content and order: each tensor's bits, weighted by position,
    summed in int64 (wrapping, so exact and order-free to compute). XLA compiles it; tf.fingerprint not."""
    import tensorflow as tf

    parts = []
    for tensor in tf.nest.flatten(data):
        flat = tf.reshape(tensor, [-1])
        if flat.dtype.is_floating:
            flat = tf.bitcast(tf.cast(flat, tf.float32), tf.int32)
        elif flat.dtype == tf.bool:
            flat = tf.cast(flat, tf.int32)
        flat = tf.cast(flat, tf.int64)
        position = tf.range(1, tf.size(flat, out_type=tf.int64) + 1, dtype=tf.int64)
        parts.append(tf.reduce_sum(flat * (position * 2654435761 + 97)))
    return tf.stack(parts)


def build_for(model: Any, x: Any) -> None:
    """Builds an unbuilt model for its training inputs (arrays or a tf.data.Dataset of (x, y)); a model
    that cannot be built this way is left to fit, and its initial weights go unrecorded."""
    import tensorflow as tf

    try:
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec[0] if isinstance(x.element_spec, tuple) else x.element_spec
            shape = tuple(spec.shape)
        else:
            shape = (None, *np.shape(x)[1:])
        model.build(shape)
    except Exception:  # noqa: BLE001 - subclassed or multi-input models: fit builds them itself
        pass


def install(probe: Probe) -> None:
    """Wraps the seeding calls and `keras.Model.fit` for this process."""
    import keras
    import tensorflow as tf

    from harness.trial.fingerprints import weights_sha256

    probe.wrap_seeding(keras.utils, "set_random_seed", "keras.utils.set_random_seed")
    probe.wrap_seeding(tf.random, "set_seed", "tf.random.set_seed")
    probe.wrap_seeding(np.random, "seed", "np.random.seed")
    probe.wrap_seeding(random, "seed", "random.seed")
    owners = {"np.random": np.random, "random": random, "tf.data.Dataset": tf.data.Dataset, "tf.random": tf.random}
    for name in DATA_CALLS:
        probe.wrap_data_call(owners[name.rsplit(".", 1)[0]], name)
    original_fit = keras.Model.fit

    class Recorder(keras.callbacks.Callback):
        def __init__(self, record: dict[str, Any], batch_print: Any) -> None:
            super().__init__()
            self.record, self.batch_print = record, batch_print

        def on_train_begin(self, logs: Any = None) -> None:
            model = self.model
            self.record["parameters"] = int(sum(np.prod(v.shape) for v in model.trainable_variables))
            self.record["initial"] = {v.path: weights_sha256([v]) for v in model.trainable_variables}
            self.record["seed_generators"] = seed_generator_states(model)
            reference = probe.reference_fit(self.record["fit"])
            if reference is not None and reference.get("initial") != self.record["initial"]:
                self.record["stopped"] = "the initial weights"
                self.model.stop_training = True  # after the first step: fit checks it after each step

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            steps = self.record["steps"]
            steps.append({"batch": [int(x) for x in self.batch_print.numpy()],
                          "weights": weights_sha256(self.model.trainable_variables)})
            reference = probe.reference_fit(self.record["fit"])
            step = len(steps) - 1
            if reference is not None and step < len(reference["steps"]) and reference["steps"][step] != steps[step]:
                self.record.setdefault("stopped", f"step {step}")
                self.model.stop_training = True
            if len(steps) >= probe.steps:
                self.model.stop_training = True

    def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
        record: dict[str, Any] = {"fit": probe.fits, "model": model.name, "line": probe.script_line(),
                                  "shuffle": kwargs.get("shuffle", True),
                                  "data": type(args[0] if args else kwargs.get("x")).__name__,
                                  "seeding_before": list(probe.seeding), "data_calls_before": list(probe.data_calls),
                                  "steps": []}
        probe.fits += 1
        if not model.built:
            # Built now, as fit would build it on its first batch: the same draws, but the initial
            # weights exist before the first step, to be fingerprinted.
            build_for(model, args[0] if args else kwargs.get("x"))
        batch_print = tf.Variable(tf.zeros([8], tf.int64), trainable=False)
        original_step = type(model).train_step.__get__(model)

        def train_step(data: Any) -> Any:
            printed = batch_fingerprint(data)[:8]  # one number per tensor of the batch (x, y, weights)
            batch_print.assign(tf.concat([printed, tf.zeros([8 - printed.shape[0]], tf.int64)], 0))
            return original_step(data)

        # The class's own step each time: a model fitted twice is wrapped once.
        model.train_step = train_step
        model.train_function = None  # rebuilt around the wrapped step
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Recorder(record, batch_print)]
        try:
            return original_fit(model, *args, **kwargs)
        finally:
            with probe.out.open("a") as out:
                out.write(json.dumps(record) + "\n")

    keras.Model.fit = fit


def main(argv: list[str]) -> None:
    out, steps, seed, reference, script, *args = argv
    from harness.studies.records import read_records

    probe = Probe(Path(out), int(steps), Path(script), None if reference == "-" else read_records(Path(reference)),
                  fix_seed=None if seed in ("-", DETERMINISM) else int(seed))
    install(probe)
    if seed == DETERMINISM:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # the doctor's check of a kernel verdict
    elif seed != "-":
        import keras

        keras.utils.set_random_seed(int(seed))
        probe.seeding.clear()  # the doctor's own call is not the script's
    sys.argv = [script, *args]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")

