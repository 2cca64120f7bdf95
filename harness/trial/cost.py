"""The price of determinism, measured: two settings of one train step timed in interleaved blocks, in several
independent units.

Conditions trained minutes apart compare the machine's drift and other load, not the setting: the same
study printed +23%, +64%, +85% and -9% for deterministic kernels (docs/speed.md). Here both settings run in
this process on one warmed model and the same cached batches, alternating A B B A A B ..., so a drift
that is linear over a pair of blocks cancels, and each block's pair of timings is one paired sample.

Blocks of one warmed model alone are not enough: one such measurement per study printed -18.0% [-31.2%, -2.2%]
and, minutes later, +17.3% [+3.7%, +32.7%] (issue 43). What differs between two builds of the model (its
buffers' places in memory, its traced loops, what else the machine did meanwhile) moves all of one
measurement's blocks together, so their spread leaves it out. So the cost is measured in UNITS units, each a
freshly built and warmed model with its own traced loops and its own blocks; the summary's interval is a
t-interval over the units' mean log ratios (`analysis/stats.unit_ratio`), which holds the spread between units
as well as the blocks' noise.

Components, each A against B:
- `op_determinism`: the train step with op determinism off against on (what `kernels` differs by);
- `tf_data_determinism`: the study's input pipeline with tf.data's `deterministic` option off against on,
  op determinism off in both (the harness keeps the option on in every condition);
- `xla` (with env:xla=1 in the study): the train step as traced against compiled with XLA, determinism on.

Only raw seconds are kept here; the ratio and its interval are the summary's. `ops_that_pay` lists, from
TensorFlow's profiler, the train step's ops that op determinism changes, with each op's time per step in
both settings: on a GPU the ops whose kernels change (`known_ops`), and on any device the ops TensorFlow's
Python API traces in one setting only.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import tempfile
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from harness.errors import first_line
from harness.platform import determinism, known_ops
from harness.trial import train
from harness.trial.config import COST_UNITS, DEFAULT_COST_BLOCKS, MAX_COST_BLOCKS, MIN_COST_BLOCKS, TrialConfig
from harness.trial.datasets import split_batches, split_pool
from harness.trial.seeds import SeedSet

DEFAULT_BLOCKS, MIN_BLOCKS, MAX_BLOCKS = DEFAULT_COST_BLOCKS, MIN_COST_BLOCKS, MAX_COST_BLOCKS
# Independent units per measurement: the fewest that give a t-interval (2 degrees of freedom) between units.
# Three units of DEFAULT_BLOCKS blocks take about the time one unit of 48 blocks took (docs/speed.md).
UNITS = COST_UNITS
# What one setting's block aims to take: long against the timer and a call's overhead, short against the
# machine's changes of speed, so a pair's two blocks see the same machine (measured under load: 48 blocks of
# 0.025 s gave intervals half as wide as 16 of 0.1 s, in the same time).
BLOCK_SECONDS = 0.025
MAX_STEPS_PER_BLOCK = 2000
CACHED_BATCHES = 16  # the batches both settings train on, over and over (the op component leaves tf.data out)
METHOD = ("independent units, each a freshly built and warmed model with its own traced loops timing both settings in "
          "interleaved blocks (A B B A ...) on the same batches; 95% CI: t-interval over the units' mean log ratios")


class Setting:
    """One side of a comparison: what it is called, what switches to it, and `run(n)`, which runs n steps and
    waits for them."""

    def __init__(self, name: str, enter: Callable[[], None], run: Callable[[int], Any],
                 op_types: Callable[[], set[str]] | None = None) -> None:
        self.name, self.enter, self.run = name, enter, run
        # The op types of its train step as traced in this setting (a train step's setting only).
        self.op_types = op_types


def interleaved_seconds(a: Setting, b: Setting, blocks: int, steps: int) -> tuple[list[float], list[float]]:
    """Each setting's seconds per block, blocks run A B, B A, A B, ...: block i's two timings are a pair."""
    seconds: dict[str, list[float]] = {a.name: [], b.name: []}
    for block in range(blocks):
        for setting in (a, b) if block % 2 == 0 else (b, a):
            setting.enter()
            began = time.perf_counter()
            setting.run(steps)
            seconds[setting.name].append(time.perf_counter() - began)
    return seconds[a.name], seconds[b.name]


def steps_per_block(setting: Setting) -> int:
    """Steps that make a block of about BLOCK_SECONDS: calls of 4, 16, 64... steps until one takes a quarter
    of a block, so a call's fixed overhead does not inflate the per-step estimate."""
    setting.enter()
    steps = 4
    while True:
        began = time.perf_counter()
        setting.run(steps)
        seconds = time.perf_counter() - began
        if seconds >= BLOCK_SECONDS / 4 or steps >= MAX_STEPS_PER_BLOCK:
            break
        steps *= 4
    return int(min(MAX_STEPS_PER_BLOCK, max(4, math.ceil(steps * BLOCK_SECONDS / max(seconds, 1e-9)))))


def compare(a: Setting, b: Setting, blocks: int) -> dict[str, Any]:
    """The component's record: both settings warmed (traced, compiled, caches filled), a block size, and the
    interleaved blocks' seconds; or why it was not measured, in one sentence."""
    try:
        for setting in (a, b):
            setting.enter()
            setting.run(CACHED_BATCHES)
        steps = steps_per_block(a)
        a_seconds, b_seconds = interleaved_seconds(a, b, blocks, steps)
    except (tf.errors.OpError, ValueError) as error:
        reason = determinism.explain_op_error(error)[1] if isinstance(error, tf.errors.OpError) else \
            first_line(error)
        return {"measured": False, "a": a.name, "b": b.name, "reason": f"{type(error).__name__}: {reason}"}
    return {"measured": True, "a": a.name, "b": b.name, "steps_per_block": steps,
            "a_seconds": a_seconds, "b_seconds": b_seconds}


# Each component's two settings, A and B, as records and sentences name them.
SETTINGS = {"op_determinism": ("op determinism off", "op determinism on"),
            "tf_data_determinism": ("tf.data deterministic off", "tf.data deterministic on"),
            "xla": ("traced", "XLA-compiled")}


def not_measured(names: list[str], reason: str) -> dict[str, dict[str, Any]]:
    """These components' records where they could not be measured, each with the one reason."""
    return {name: {"measured": False, "a": SETTINGS[name][0], "b": SETTINGS[name][1], "reason": reason}
            for name in names}


def measure(config: TrialConfig, seeds: SeedSet, blocks: int = DEFAULT_BLOCKS, xla: bool = False,
            profile_ops: bool | None = None, units: int = UNITS) -> dict[str, Any]:
    """The components of determinism's cost for a study's control config and seeds (see the module's text),
    each in `units` independent units of `blocks` blocks per setting.

    `xla`: also time the XLA-compiled step against the traced one (for env:xla=1). `profile_ops`: list
    the ops that pay (None: wherever op determinism's cost was measured). Op determinism is left as it was
    found. A measurement never stops a study: what fails is recorded as not measured, with why."""
    was = determinism.op_determinism_enabled()
    try:
        measured = [_measure(config.replace(determinism=True), seeds, blocks, xla,
                             profile_ops if unit == units - 1 else False) for unit in range(units)]
        return {"components": {name: _in_units([m["components"][name] for m in measured])
                               for name in measured[0]["components"]},
                "ops_that_pay": measured[-1]["ops_that_pay"]}
    except Exception as error:  # noqa: BLE001  the study's records are written; its summary says why
        names = ["tf_data_determinism", "op_determinism", *(["xla"] if xla else [])]
        return {"components": not_measured(names, f"{type(error).__name__}: {first_line(error)}"),
                "ops_that_pay": None}
    finally:
        determinism.set_op_determinism(was)


def _in_units(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One component's record from its units' records: every unit's blocks, or the first unit's reason it was
    not measured (a component measured in some units only would have an interval of the lucky ones)."""
    failed = next((part for part in parts if not part["measured"]), None)
    if failed:
        return failed
    return {"measured": True, "a": parts[0]["a"], "b": parts[0]["b"],
            "units": [{key: part[key] for key in ("steps_per_block", "a_seconds", "b_seconds")} for part in parts]}


def _measure(control: TrialConfig, seeds: SeedSet, blocks: int, xla: bool,
             profile_ops: bool | None) -> dict[str, Any]:
    """One unit of `measure` for the control config: the pipeline's component (its own pipeline), then the
    train step's (a model built and warmed here, its own traced loops, both settings on its cached batches),
    then the ops that pay."""
    components = {"tf_data_determinism": _tf_data_component(control, seeds, blocks)}
    trainer, reason = train.trainer_of(control)
    if trainer != "harness" or control.strategy != "none":
        why = (f"the model trains through its own Keras fit ({reason or '--trainer=keras_fit'}), which the "
               "harness cannot time in blocks") if trainer != "harness" else \
            f"--strategy={control.strategy} splits the step over replicas, which the harness times only whole"
        components.update(not_measured(["op_determinism", *(["xla"] if xla else [])], why))
        return {"components": components, "ops_that_pay": None}
    dataset = train.prepare(control)
    split = split_pool(dataset, seeds, control)
    trainable = train.build_trainable(control, dataset, seeds)
    batches = _cached_batches(control, seeds, split)
    off, on = (_step_setting(name, trainable, batches, control.xla, enabled)
               for name, enabled in zip(SETTINGS["op_determinism"], (False, True), strict=True))
    components["op_determinism"] = compare(off, on, blocks)
    if xla:
        traced, compiled = (_step_setting(name, trainable, batches, jit, True)
                            for name, jit in zip(SETTINGS["xla"], (False, True), strict=True))
        components["xla"] = compare(traced, compiled, blocks)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    ops = None
    if profile_ops or (profile_ops is None and components["op_determinism"]["measured"]):
        # Four blocks' steps: a profile of one op's time needs more than the block's 25 ms.
        ops = ops_that_pay(off, on, 4 * (components["op_determinism"].get("steps_per_block") or CACHED_BATCHES),
                           kinds=("Device",) if gpu else ("Host",))
    return {"components": components, "ops_that_pay": ops}


def _cached_batches(config: TrialConfig, seeds: SeedSet, split) -> tf.data.Dataset:
    """The first CACHED_BATCHES full batches of the trial's own pipeline, cached and repeated: both settings
    train on the same batches, and reading them costs next to nothing (the pipeline is its own component)."""
    batches = split_batches(split, seeds, config)
    full = batches.filter(lambda *batch: tf.shape(batch[1])[0] == config.batch_size)
    return full.take(CACHED_BATCHES).cache().repeat()


def _step_setting(name: str, trainable, batches: tf.data.Dataset, xla: bool, op_determinism: bool) -> Setting:
    """The train step in one setting: its own traced loop (kernels are made when a function first runs, so
    each setting's loop first runs under it) and its own iterator over the same batches."""
    loop = train.make_train_loop(trainable, xla)
    iterator = iter(batches)
    done = [0]

    def run(n: int) -> None:
        loop(iterator, tf.constant(n, tf.int64), tf.constant(done[0], tf.int64)).numpy()
        done[0] += n

    def op_types() -> set[str]:
        determinism.set_op_determinism(op_determinism)  # should the step trace again, it traces in its setting
        x_spec, y_spec, *w_spec = batches.element_spec
        function = loop.train_step.get_concrete_function(x_spec, y_spec, tf.TensorSpec([], tf.int64), *w_spec)
        return set(train.graph_op_types(function.graph))

    return Setting(name, lambda: determinism.set_op_determinism(op_determinism), run, op_types)


def _tf_data_component(config: TrialConfig, seeds: SeedSet, blocks: int) -> dict[str, Any]:
    """The input pipeline alone, `deterministic` off against on, drained inside a tf.function."""
    determinism.set_op_determinism(False)  # op determinism would force tf.data's option on
    dataset = train.prepare(config.replace(determinism=False))
    split = split_pool(dataset, seeds, config)

    @tf.function
    def drain(iterator, n: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0, tf.int64)
        for _ in tf.range(n):
            labels = next(iterator)[1]
            total += tf.size(labels, tf.int64)
        return total

    def setting(name: str, deterministic: bool) -> Setting:
        pipeline = split_batches(split, seeds, config, deterministic=deterministic)
        iterator = iter(pipeline.repeat())
        return Setting(name, lambda: determinism.set_op_determinism(False),
                       lambda n: drain(iterator, tf.constant(n, tf.int64)).numpy())

    off, on = SETTINGS["tf_data_determinism"]
    return compare(setting(off, False), setting(on, True), blocks)


def ops_that_pay(off: Setting, on: Setting, steps: int, kinds: tuple[str, ...] = ("Device",),
                 listed: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """The train step's ops that op determinism changes, with each op's self time per step in both settings,
    from TensorFlow's profiler (one block of `steps` per setting: one sample each).

    Two kinds change: ops whose kernel is another under op determinism (`known_ops`: cuDNN algorithm choice,
    atomics; GPU kernels), and ops TensorFlow's Python API puts in the graph only in one setting (measured
    here on a CPU: `SparseSoftmaxCrossEntropyWithLogits` traced off becomes a composite of `LogSoftmax`,
    `UnsortedSegmentSum` and about ten more ops on). `kinds`: where ops ran, as the profiler names it
    ("Device": a GPU; "Host": the CPU). `listed`: which op types to list instead (tests)."""
    try:
        times = {setting.name: _profiled_op_ms(setting, steps, kinds) for setting in (off, on)}
        # Which ops each setting's step has is read off its traced graph: the profile also holds the input
        # pipeline's ops, which run on their own threads whenever they like.
        traced = {setting.name: setting.op_types() for setting in (off, on)}
    except (tf.errors.OpError, RuntimeError, ValueError) as error:
        return {"ops": [], "note": f"not profiled: {type(error).__name__}: {first_line(error)}", "steps": steps}
    off_ms, on_ms = times[off.name], times[on.name]
    off_ops, on_ops = traced[off.name], traced[on.name]

    def changed(op: str) -> bool:
        return (op in off_ops) != (op in on_ops) or (op in known_ops.KNOWN_OPS and "Device" in kinds)

    rows = [{"op": op, "what": _what_changed(op, op in off_ops, op in on_ops), "traced_off": op in off_ops,
             "traced_on": op in on_ops, "off_ms_per_step": off_ms.get(op), "on_ms_per_step": on_ms.get(op)}
            for op in sorted(off_ops | on_ops | set(off_ms) | set(on_ms)) if (listed or changed)(op)]
    rows.sort(key=lambda row: -((row["on_ms_per_step"] or 0) - (row["off_ms_per_step"] or 0)))
    note = None
    if not rows:
        note = "no op of the train step changes under op determinism here" + (
            "" if "Device" in kinds else " (the GPU kernels it changes, cuDNN algorithm choice and atomics, do not "
                                         "run on a CPU)")
    return {"ops": rows, "note": note, "steps": steps}


def _what_changed(op: str, off: bool, on: bool) -> str:
    if off and not on:
        return "traced only with op determinism off: replaced by a deterministic composite when on"
    if on and not off:
        return "traced only with op determinism on: part of a deterministic composite"
    known = known_ops.KNOWN_OPS.get(op)
    return known.what if known else "in both settings"


def _profiled_op_ms(setting: Setting, steps: int, kinds: tuple[str, ...]) -> dict[str, float]:
    """Milliseconds per step of each op type (self time, summed over its instances) of one profiled block."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

    with tempfile.TemporaryDirectory(prefix="harness-profile-") as logdir:
        setting.enter()
        tf.profiler.experimental.start(logdir)
        try:
            setting.run(steps)
        finally:
            with contextlib.suppress(Exception):
                tf.profiler.experimental.stop()
        paths = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))
        if not paths:
            raise RuntimeError("the profiler wrote no trace")
        data, ok = profiler_plugin.xspace_to_tools_data(paths[-1:], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(data.decode(errors="replace") if isinstance(data, bytes) else str(data))
    tables = json.loads(data)
    columns = [column["id"] for column in tables[0]["cols"]]
    totals: dict[str, float] = {}
    for row in tables[0]["rows"]:  # the first table counts every op once, IDLE included
        cells = dict(zip(columns, (cell.get("v") for cell in row["c"]), strict=False))
        if cells.get("host_or_device") in kinds and cells.get("type") != "IDLE":
            op = _op_type(str(cells["type"]))
            totals[op] = totals.get(op, 0.0) + float(cells["total_self_time"]) / 1e3 / steps
    return totals


def _op_type(profiled: str) -> str:
    """The graph's op type of a profiled kernel: oneDNN's `_MklMatMul` is `MatMul`."""
    for prefix in ("_MklNative", "_Mkl", "_FusedMkl"):
        if profiled.startswith(prefix):
            return profiled[len(prefix):]
    return profiled.lstrip("_")

