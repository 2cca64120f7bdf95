"""Observes an unmodified Keras script from the inside:
`python -m harness.keras_probe OUT STEPS MODE REFERENCE RUN_AS SCRIPT [ARGS]`.

Run by `harness.doctor`, once per run it compares. Before the script runs, it
wraps what decides a run's bits, without changing them:
- the seeding calls (`random.seed`, `np.random.seed`, `tf.random.set_seed`,
  `keras.utils.set_random_seed`), noting each with the script line that made it;
- the calls that put data in a random order (`np.random.permutation`, `shuffle`
  and `choice`, `random.shuffle` and `sample`, `np.random.default_rng`,
  `tf.data.Dataset.shuffle`, `tf.random.shuffle`) and the calls that draw
  random values (`np.random.rand`, `randn`, `random`, `normal`, `uniform`,
  `randint`, ..., `random.random`, ..., `tf.random.normal`, ... outside a
  model), made by the user's code, each with its line, whether anything
  seeded it, and a fingerprint of what it returned;
- `keras.Model.__init__`: where each model was built (the user's builder
  function, its arguments, the line), so fits of one builder can be compared
  within a run;
- `keras.Model.fit`: every fitted model gets a callback that records its initial
  weights, the state of every `keras.random.SeedGenerator` (dropout's
  randomness), and per step a fingerprint of the batch and of the weights after
  the step; the train step gets an in-graph fingerprint of its batch
  (integer arithmetic on the bits, which XLA compiles, as fit's default
  `jit_compile="auto"` does). The arrays handed to fit are fingerprinted whole,
  in order and as a set of rows, so other values tell from another order.
  After STEPS steps it stops that fit (`model.stop_training`): a diagnosis
  needs the first steps, not the whole run.

Then it runs the script as `__main__` with its own arguments. Every fit
becomes one JSON line in OUT. REFERENCE other than `-` is another run's OUT:
each fit stops at its first step (or initial weights) that differs from the
same fit there (`stopped` in its line says which): what follows a first
difference cannot tell where the runs parted. The script goes on to its next
fit, so each fit gets its own comparison. MODE `determinism` turns on op
determinism first, to check a kernel verdict (`-`: nothing). MODE
`observe:K:DIR`, `interrupt:K:DIR` or `resume:K:DIR` is the doctor's restart
replay of the script's first fit (`--resume_at=K`): that fit runs whole
(STEPS: the steps recorded from epoch K + 1 on), its line says how it would
resume (`resumed_by`: the script's own `BackupAndRestore`, its backup_dir
moved into DIR, or else the harness's checkpoint of trial/resume.py in DIR),
the whole training state's fingerprints where epoch K + 1 begins
(`resume_state`) and the final weights' (`final_weights`). `interrupt` ends the
process at the end of epoch K (after the script's callbacks, so its backup is
written), as a preemption would; `resume` resumes from there (BackupAndRestore
itself, or the harness restoring its checkpoint and starting fit at epoch K + 1).
RUN_AS other
than `-` is the user's script that SCRIPT (the doctor's fixed copy of it)
stands in for: SCRIPT runs as if it were there (its `__file__`, directory and
`sys.argv[0]`).
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import os
import random
import sys
import traceback
import types
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError, first_line
from harness.redaction import redact_text

USAGE = "python -m harness.keras_probe OUT STEPS MODE REFERENCE RUN_AS SCRIPT [ARGS]"
# MODE: turn on op determinism before the script runs, seeding nothing.
DETERMINISM = "determinism"
# MODE `PHASE:K:DIR`: the doctor's restart replay (module docstring).
RESUME_PHASES = ("observe", "interrupt", "resume")
BACKUP_AND_RESTORE, HARNESS_RESUME = "BackupAndRestore", "harness"
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
# The calls that draw random values (data made at random, as `X = np.random.rand(100, 10)`): the seeding
# calls that make each repeat, and the position of a seed argument of its own. Outside a model only: a
# layer's own random ops are the model's business (init, dropout).
VALUE_CALLS = {
    **{f"np.random.{name}": (NUMPY_SEEDING, None) for name in (
        "rand", "randn", "random", "random_sample", "normal", "uniform", "randint", "standard_normal",
        "binomial", "poisson", "exponential", "beta", "gamma", "multivariate_normal")},
    **{f"random.{name}": (PYTHON_SEEDING, None) for name in (
        "random", "uniform", "gauss", "normalvariate", "randint", "randrange", "choice", "choices")},
    **{f"tf.random.{name}": (TF_SEEDING, "seed") for name in (
        "normal", "uniform", "truncated_normal", "categorical", "gamma", "poisson")},
}


class Probe:
    """What one run of the script did: its seeding calls, and each fit's fingerprints."""

    def __init__(self, out: Path, steps: int, script: Path, reference: list[dict[str, Any]] | None = None,
                 run_as: Path | None = None, resume: tuple[str, int, Path] | None = None) -> None:
        self.out, self.steps, self.script = out, steps, script.resolve()
        self.reference = reference
        self.resume = resume  # (phase, epoch K, directory) of the restart replay, or None
        # The user's script: its name in every line said (a fixed copy stands in for it), its directory
        # the user's code.
        self.run_as = (run_as or script).resolve()
        self.seeding: list[dict[str, Any]] = []
        self.data_calls: list[dict[str, Any]] = []
        self.random_calls: list[dict[str, Any]] = []
        self.origins: dict[int, dict[str, Any]] = {}  # id(model) -> where it was built
        self.fits = 0
        self._depth = 0  # keras.utils.set_random_seed calls the others: only the outermost call counts

    def user_line(self, depth: int = 2) -> str | None:
        """`train.py:12` when the caller `depth` frames up is the user's code (the script or a file beside
        it); None when it is Keras, TensorFlow or any other library."""
        frame = sys._getframe(depth)
        path = Path(frame.f_code.co_filename).resolve()
        if path == self.script:
            return f"{self.run_as.name}:{frame.f_lineno}"
        if path.parent == self.run_as.parent and path.suffix == ".py":
            return f"{path.name}:{frame.f_lineno}"
        return None

    def script_line(self) -> str | None:
        """`train.py:12`: the innermost frame of the user's script on the stack."""
        for frame in reversed(traceback.extract_stack()):
            if Path(frame.filename).resolve() == self.script:
                return f"{self.run_as.name}:{frame.lineno}"
        return None

    def builder(self) -> dict[str, Any]:
        """Where the model being constructed comes from: the innermost function of the user's script on the
        stack that is not a constructor (a `create_model(seed)`), its first line and arguments; or the
        script's own line where it builds at top level."""
        frame = sys._getframe(2)
        while frame is not None:
            if Path(frame.f_code.co_filename).resolve() == self.script and frame.f_code.co_name != "__init__":
                break
            frame = frame.f_back
        if frame is None:
            return {"function": None, "line": None, "arguments": None, "built_at": None}
        code = frame.f_code
        built_at = f"{self.run_as.name}:{frame.f_lineno}"
        if code.co_name == "<module>":
            return {"function": None, "line": None, "arguments": None, "built_at": built_at}
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        return {"function": code.co_name, "line": code.co_firstlineno, "built_at": built_at,
                "arguments": {name: _short_repr(frame.f_locals.get(name)) for name in names}}

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
            result = original(*args, **kwargs)
            if line is not None:
                seed = kwargs.get("seed", args[seed_position] if seed_position is not None
                                  and len(args) > seed_position else None)
                seeded_by = [s for s in probe.seeding if s["call"] in seeding_calls]
                probe.data_calls.append({"call": name, "line": line, "seed": seed if isinstance(
                    seed, (int, type(None))) else str(seed), "seeded": seed is not None or bool(seeded_by),
                    "value_sha256": value_fingerprint(args[0] if result is None and args else result)})
            return result

        setattr(owner, attribute, data_call)

    def wrap_value_call(self, owner: Any, name: str) -> None:
        """Notes each call that draws random values made by the user's code outside a model: its line,
        whether it repeats (a seed argument, or a seeding call before it that reaches it), and what it drew."""
        attribute = name.rsplit(".", 1)[1]
        original = getattr(owner, attribute)
        seeding_calls, seed_argument = VALUE_CALLS[name]
        probe = self

        def value_call(*args: Any, **kwargs: Any) -> Any:
            line = probe.user_line()
            result = original(*args, **kwargs)
            if line is not None and not _inside_keras():
                seed = kwargs.get(seed_argument) if seed_argument else None
                seeded_by = [s for s in probe.seeding if s["call"] in seeding_calls]
                probe.random_calls.append({"call": name, "line": line, "seeded": seed is not None or bool(seeded_by),
                                           "value_sha256": value_fingerprint(result)})
            return result

        setattr(owner, attribute, value_call)

    def reference_fit(self, index: int) -> dict[str, Any] | None:
        return self.reference[index] if self.reference is not None and index < len(self.reference) else None


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _inside_keras() -> bool:
    """Whether Keras code is on the stack: a random op a layer runs (while it is built or called) is the
    model's own randomness, not the data's."""
    frame = sys._getframe(2)
    while frame is not None:
        if f"{Path('keras') / 'src'}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def value_fingerprint(value: Any) -> str | None:
    """SHA-256 of what a random call returned (an array's shape, dtype and bytes; a number's repr); None for
    what has no value to read here (a symbolic tensor, a generator)."""
    try:
        if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
            value = value.numpy()
        if isinstance(value, (np.ndarray, np.generic)):
            array = np.ascontiguousarray(value)
            if array.dtype == object:
                return None
            digest = hashlib.sha256(f"{array.shape}{array.dtype.str}".encode())
            digest.update(array.tobytes())
            return digest.hexdigest()
        if isinstance(value, (int, float, str, bool, list, tuple)):
            return hashlib.sha256(repr(value).encode()).hexdigest()
    except Exception:  # noqa: BLE001 - a value the probe cannot read is simply not fingerprinted
        return None
    return None


def data_fingerprints(x: Any, y: Any) -> dict[str, dict[str, str]] | None:
    """Each array handed to fit (x, y, or each part of a dict or tuple of them): its values in order, and its
    rows as a set (the same rows in another order give the same `rows`). None for a tf.data.Dataset or a
    generator, whose content the probe does not read ahead of fit."""
    import tensorflow as tf

    if x is None or isinstance(x, tf.data.Dataset) or hasattr(x, "__next__") or hasattr(x, "__getitem__") and \
            type(x).__name__.endswith(("Sequence", "PyDataset")):
        return None
    found = {}
    for name, value in (("x", x), ("y", y)):
        parts = tf.nest.flatten(value) if value is not None else []
        for index, part in enumerate(parts):
            try:
                array = np.ascontiguousarray(np.asarray(part))
            except Exception:  # noqa: BLE001 - not an array: nothing to compare
                return None
            if array.dtype == object:
                return None
            rows = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1)
            as_rows = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))
            found[name if len(parts) == 1 else f"{name}[{index}]"] = {
                "values": value_fingerprint(array),
                "rows": hashlib.sha256(np.sort(as_rows.reshape(-1)).tobytes()).hexdigest()}
    return found


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


def optimizer_variables(model: Any) -> list[Any]:
    """The model's optimizer's variables (iteration count, learning rate, slots); [] before it is built."""
    optimizer = getattr(model, "optimizer", None)
    return list(optimizer.variables) if optimizer is not None and optimizer.built else []


def state_fingerprints(model: Any) -> dict[str, dict[str, str]]:
    """SHA-256 of every variable of the training state (trial/resume.py's parts: weights, optimizer state,
    random generator states), by part and name: what a resumed run must hold where its first epoch begins."""
    from harness.trial.fingerprints import array_sha256
    from harness.trial.resume import keras_training_state

    return {part: {name: array_sha256(np.asarray(variable.numpy())) for name, variable in variables.items()}
            for part, variables in keras_training_state(model, optimizer_variables(model)).items()}


def write_harness_checkpoint(model: Any, directory: Path) -> None:
    """The harness's checkpoint of the fit's whole training state (trial/resume.py's format), atomically."""
    from harness.trial.resume import CHECKPOINT_FILE, keras_training_state, write_state

    write_state(directory / CHECKPOINT_FILE, keras_training_state(model, optimizer_variables(model)),
                int(model.optimizer.iterations.numpy()), np.zeros(0, np.float32))


def restore_harness_checkpoint(model: Any, directory: Path) -> None:
    """Restores the harness's checkpoint into the freshly built model, its optimizer built first."""
    from harness.trial.resume import CHECKPOINT_FILE, keras_training_state, read_checkpoint, restore_state
    from harness.trial.train import TrialFailed

    path = directory / CHECKPOINT_FILE
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        restore_state(read_checkpoint(path), keras_training_state(model, optimizer_variables(model)), path)
    except TrialFailed as failure:
        raise UsageError(str(failure)) from None


def move_backup(backup: Any, directory: Path) -> None:
    """Points a BackupAndRestore callback's files into `directory` (its attributes as Keras 3 names them)."""
    backup.backup_dir = str(directory)
    backup._weights_path = str(directory / "latest.weights.h5")
    backup._training_metadata_path = str(directory / "training_metadata.json")
    backup._prev_weights_path = f"{backup._weights_path}.bkp"
    backup._prev_training_metadata_path = f"{backup._training_metadata_path}.bkp"


def install(probe: Probe) -> None:
    """Wraps the seeding calls and `keras.Model.fit` for this process."""
    import keras
    import tensorflow as tf

    from harness.trial.fingerprints import array_sha256, weights_sha256_by_position

    probe.wrap_seeding(keras.utils, "set_random_seed", "keras.utils.set_random_seed")
    probe.wrap_seeding(tf.random, "set_seed", "tf.random.set_seed")
    probe.wrap_seeding(np.random, "seed", "np.random.seed")
    probe.wrap_seeding(random, "seed", "random.seed")
    owners = {"np.random": np.random, "random": random, "tf.data.Dataset": tf.data.Dataset, "tf.random": tf.random}
    for name in DATA_CALLS:
        probe.wrap_data_call(owners[name.rsplit(".", 1)[0]], name)
    for name in VALUE_CALLS:
        probe.wrap_value_call(owners[name.rsplit(".", 1)[0]], name)
    original_init = keras.Model.__init__

    def init(model: Any, *args: Any, **kwargs: Any) -> None:
        probe.origins.setdefault(id(model), probe.builder())
        original_init(model, *args, **kwargs)

    keras.Model.__init__ = init
    original_fit = keras.Model.fit

    class Recorder(keras.callbacks.Callback):
        def __init__(self, record: dict[str, Any], batch_print: Any, replay: dict[str, Any] | None) -> None:
            super().__init__()
            self.record, self.batch_print = record, batch_print
            # The restart replay of this fit ({phase, epoch, directory}), or None: a whole fit, not its first steps.
            self.replay, self.epoch = replay, 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch
            if self.replay and epoch == self.replay["epoch"]:
                self.record["resume_state"] = state_fingerprints(self.model)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if not self.replay or self.replay["phase"] != "interrupt" or epoch + 1 != self.replay["epoch"]:
                return
            if self.record["resumed_by"] == HARNESS_RESUME:
                write_harness_checkpoint(self.model, self.replay["directory"])
            self.record["interrupted"] = self.replay["epoch"]
            self.record["resume_state"] = state_fingerprints(self.model)  # to tell a script that does not repeat
            with probe.out.open("a") as out:
                out.write(redact_text(json.dumps(self.record)) + "\n")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # as a preemption ends it: no finally, no callback's on_train_end

        def on_train_end(self, logs: Any = None) -> None:
            if self.replay:
                self.record["final_weights"] = weights_sha256_by_position(self.model.weights)

        def on_train_begin(self, logs: Any = None) -> None:
            model = self.model
            if self.replay and self.replay.get("phase") == "resume" and \
                    self.record["resumed_by"] == HARNESS_RESUME:
                restore_harness_checkpoint(model, self.replay["directory"])
            self.record["parameters"] = int(sum(np.prod(v.shape) for v in model.trainable_variables))
            # By position, not name: two fits of one run are compared too, and Keras names a second build's
            # layers otherwise.
            # Every variable, trainable and not: BatchNorm's moving statistics differ between runs too.
            self.record["initial"] = {v.path: array_sha256(np.asarray(v.numpy())) for v in model.weights}
            self.record["seed_generators"] = seed_generator_states(model)
            reference = probe.reference_fit(self.record["fit"])
            if reference is not None and reference.get("initial") != self.record["initial"]:
                self.record["stopped"] = "the initial weights"
                self.model.stop_training = True  # after the first step: fit checks it after each step

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            steps = self.record["steps"]
            if self.replay:  # the steps from epoch K + 1 on, where a resumed run would part; the fit runs whole
                if self.epoch >= self.replay["epoch"] and len(steps) < probe.steps:
                    steps.append({"batch": [int(x) for x in self.batch_print.numpy()],
                                  "weights": weights_sha256_by_position(self.model.weights)})
                return
            steps.append({"batch": [int(x) for x in self.batch_print.numpy()],
                          "weights": weights_sha256_by_position(self.model.weights)})
            reference = probe.reference_fit(self.record["fit"])
            step = len(steps) - 1
            if reference is not None and step < len(reference["steps"]) and reference["steps"][step] != steps[step]:
                self.record.setdefault("stopped", f"step {step}")
                self.model.stop_training = True
            if len(steps) >= probe.steps:
                self.model.stop_training = True

    def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
        x = args[0] if args else kwargs.get("x")
        y = args[1] if len(args) > 1 else kwargs.get("y")
        optimizer = getattr(model, "optimizer", None)
        record: dict[str, Any] = {"fit": probe.fits, "model": model.name, "line": probe.script_line(),
                                  "shuffle": kwargs.get("shuffle", True), "data": type(x).__name__,
                                  "data_sha256": data_fingerprints(x, y),
                                  "optimizer": type(optimizer).__name__ if optimizer is not None else None,
                                  "built_by": probe.origins.get(id(model)),
                                  "seeding_before": list(probe.seeding), "data_calls_before": list(probe.data_calls),
                                  "random_calls_before": list(probe.random_calls), "steps": []}
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
        replay = None
        if probe.resume is not None and record["fit"] == 0:
            phase, epoch, directory = probe.resume
            replay = {"phase": phase, "epoch": epoch, "directory": directory}
            record["epochs"] = kwargs.get("epochs", args[3] if len(args) > 3 else 1)
            backups = [c for c in kwargs.get("callbacks") or [] if isinstance(c, keras.callbacks.BackupAndRestore)]
            record["resumed_by"] = BACKUP_AND_RESTORE if backups else HARNESS_RESUME
            for backup in backups:  # the doctor's runs back up into its own directory, never the script's
                move_backup(backup, directory / ("backup" if phase != "observe" else "observe_backup"))
            if phase == "resume" and not backups:
                kwargs["initial_epoch"] = epoch  # the harness resumes fit as BackupAndRestore would
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Recorder(record, batch_print, replay)]
        try:
            return original_fit(model, *args, **kwargs)
        except Exception as error:
            # A fit that raised is observed only in part: the doctor reports the error, not a verdict on it.
            said = str(error).strip().splitlines()
            record["raised"] = f"{type(error).__name__}: {said[0] if said else ''}"
            raise
        finally:
            with probe.out.open("a") as out:
                out.write(redact_text(json.dumps(record)) + "\n")  # a raised error can quote a secret

    keras.Model.fit = fit


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What the probe's arguments ask for, checked: the probe, op determinism or not, the script (compiled) and
    the user's script it runs as, and the script's own arguments."""

    probe: Probe
    determinism: bool
    code: types.CodeType
    run_as: Path
    args: list[str]


def parse_arguments(argv: list[str]) -> Invocation:
    """OUT STEPS MODE REFERENCE RUN_AS SCRIPT [ARGS], each checked before anything of the script runs; one
    sentence (UsageError) for the first that is not what the doctor passes."""
    if len(argv) < 6:
        raise UsageError(f"usage: {USAGE}, as harness.doctor runs it; got {len(argv)} of the 6 arguments")
    out, steps, mode, reference, run_as, script, *args = argv
    if not steps.isdecimal() or not steps.isascii() or int(steps) < 1:
        raise UsageError(f"STEPS must be a whole number of steps, at least 1, got {steps!r}")
    resume = None
    if mode.split(":")[0] in RESUME_PHASES:
        phase, epoch, directory = (mode.split(":", 2) + ["", ""])[:3]
        if not epoch.isdecimal() or not epoch.isascii() or int(epoch) < 1 or not Path(directory).is_dir():
            raise UsageError(f"MODE {mode!r} must be PHASE:EPOCH:DIRECTORY, EPOCH at least 1 and DIRECTORY an "
                             "existing directory")
        resume = (phase, int(epoch), Path(directory))
    elif mode not in ("-", DETERMINISM):
        raise UsageError(f"MODE must be - (nothing), {DETERMINISM} or "
                         f"{'|'.join(RESUME_PHASES)}:EPOCH:DIRECTORY, got {mode!r}")
    if Path(out).is_dir() or not Path(out).parent.is_dir():
        raise UsageError(f"OUT {out} must be a file in an existing directory")
    for name, path in (("REFERENCE", reference), ("RUN_AS", run_as), ("SCRIPT", script)):
        if (path != "-" or name == "SCRIPT") and not Path(path).is_file():
            raise UsageError(f"{name} {path} is not a file")
    from harness.studies.records import read_records

    try:
        # As `python SCRIPT` would: a file that is not Python is refused before anything runs.
        code = compile(Path(script).read_bytes(), str(Path(script).resolve()), "exec")
    except (SyntaxError, ValueError) as error:
        raise UsageError(f"SCRIPT {script} is not a Python script ({first_line(error)})") from None
    original = Path(script if run_as == "-" else run_as)
    probe = Probe(Path(out), int(steps), Path(script), None if reference == "-" else read_records(Path(reference)),
                  run_as=original, resume=resume)
    return Invocation(probe, mode == DETERMINISM, code, original, args)


def main(invocation: Invocation) -> None:
    install(invocation.probe)
    if invocation.determinism:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # the doctor's check of a kernel verdict
    original = invocation.run_as
    sys.argv = [str(original), *invocation.args]
    sys.path.insert(0, str(original.resolve().parent))
    # As `python SCRIPT` runs it, but as the user's script where a fixed copy stands in: its __file__ (a
    # script that finds its data beside itself still does), with its lines counted in the copy.
    module = type(sys)("__main__")
    module.__dict__.update({"__file__": str(original), "__builtins__": builtins})
    saved_main, sys.modules["__main__"] = sys.modules.get("__main__"), module
    try:
        exec(invocation.code, module.__dict__)
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main
