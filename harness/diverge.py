"""`python -m harness.diverge`: where do two runs of the same trial part?

    python -m harness.diverge --benchmark=digits_mlp --b_env=TF_ENABLE_ONEDNN_OPTS=0
    python -m harness.diverge --traces=a.npz,b.npz

Runs the trial twice, each in a fresh process (run B may differ on purpose:
`--b_flip_bit`, `--b_env`), with per-step tracing: fingerprints, computed
in-graph, of the loss, of every gradient and of every variable after its
update, and per layer call, of the layer's inputs, its output and the gradient
into that output. Then it names the first step where anything differs and, at
that step, what differed first: the initial weights, the forward pass (the
loss), a gradient (the first in backprop order, with its layer), or an update;
and the layer where the runs part: the first, in execution order, whose inputs
are equal and whose output differs (or, in the backward pass, the layer that
passes back the first differing gradient).
With `--b_flip_bit`, the one-bit probe of Summers & Dinneen (2021): how fast
B's weights drift from A's (after every loop call), its growth rate, and the
step where their test predictions part, or, if they never do, how many steps
the drift would need to reach the distance between two runs that differ by a
seed (a third run). Then it runs each side again, through that step, with
every op's inputs and outputs fingerprinted (`trial/op_trace.py`), and names
the first op whose inputs are equal and whose output differs, ops in one run's
graph only, ops that ran inside XLA clusters in one run only, and the cause
(`analysis/first_op.py`); `--verify` re-runs both sides with the cause's remedy.
Writes OUTPUT_DIR/divergence.json (`harness.divergence/1`) and the traces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import flags

from harness import cli, trial_flags
from harness.analysis.divergence import compare, format_divergence, format_growth, growth, load_trace, plot_growth
from harness.analysis.first_op import REMEDIES, cause_of, first_op, format_first_op, load_op_trace
from harness.errors import UsageError
from harness.flags import value_or
from harness.platform.known_ops import ENVIRONMENT_CAUSES
from harness.schema import DIVERGENCE_FILE, DIVERGENCE_SCHEMA
from harness.studies.records import utc_timestamp, write_json

FLAGS = flags.FLAGS
# The shared flags diverge reads, which its --help lists with its own.
for _name in (*trial_flags.CONFIG_FLAGS, *trial_flags.SEED_FLAGS, "output_dir"):
    flags.declare_key_flag(_name)
flags.DEFINE_list("traces", None, "Compare these two trace files (a.npz,b.npz) instead of running the trial.")
flags.DEFINE_integer("b_flip_bit", None, "Run B only: flip the lowest bit of this initial weight.")
flags.DEFINE_list("b_env", [], "Run B only: environment variables NAME=VALUE, e.g. TF_ENABLE_ONEDNN_OPTS=0.")
flags.DEFINE_boolean("ops", True, "After a divergence, run each side again through the step where they part "
                     "with every op's tensors fingerprinted, and name the first op where they part.")
flags.declare_key_flag("verify")  # shared with the doctor (harness/flags.py)
flags.DEFINE_string("trace_to", None, "Internal: run the trial in this process and write its trace here.")
flags.DEFINE_string("ops_to", None, "Internal: run the trial with every op fingerprinted and write its op trace here.")


def write_trace(path: Path) -> None:
    """Runs the trial given by the flags with tracing and saves its fingerprints."""
    from harness.platform import environment
    from harness.trial.train import run_trial

    config = trial_flags.config_from_flags()
    result = run_trial(config, trial_flags.seeds_from_flags(), trace=True)
    if result.status["code"] != "ok":
        raise UsageError(f"the trial did not finish ({result.status['code']}: {result.status['message']})")
    env = environment.capture()
    np.savez(path, initial=result.trace["initial"], steps=result.trace["steps"],
             snapshot_steps=result.trace["snapshot_steps"], snapshot_weights=result.trace["snapshot_weights"],
             snapshot_predictions=result.trace["snapshot_predictions"],
             variables=np.array(result.trace["variables"]), layers=np.array(result.trace["layers"]),
             layer_steps=result.trace["layer_steps"], layer_paths=np.array(result.trace["layer_paths"], str),
             layer_classes=np.array(result.trace["layer_classes"], str),
             weights_sha256=np.array(result.fingerprints["weights_sha256"]),
             context=np.array(json.dumps({"config": config.as_dict(),
                                          "seeds": trial_flags.seeds_from_flags().as_dict(),
                                          "onednn": env["onednn_enabled"], "threads": env["threads"]})))


def write_op_trace(path: Path) -> None:
    """Runs the trial given by the flags with every op of its step fingerprinted at every step, and saves the
    op trace: the step's ops, their tensors' fingerprints per step, and what the runtime ran."""
    from harness.trial import op_trace
    from harness.trial.train import run_trial

    with op_trace.runtime_graph() as runtime:
        result = run_trial(trial_flags.config_from_flags(), trial_flags.seeds_from_flags(), trace=True,
                           trace_ops=True)
    if result.status["code"] != "ok":
        raise UsageError(f"the trial did not finish ({result.status['code']}: {result.status['message']})")
    table = result.trace["op_table"]
    np.savez(path, op_table=np.array(json.dumps(table)), op_steps=result.trace["op_steps"],
             runtime_ran=np.array(op_trace.ran(table["names"], runtime), bool),
             xla_clusters=np.array(op_trace.xla_clusters(runtime), str))


def _run_side(side: str, argv: list[str], output_dir: Path, extra: list[str], env_vars: dict[str, str],
              ops: bool = False) -> Path:
    path = output_dir / (f"ops_{side}.npz" if ops else f"trace_{side}.npz")
    internal = [f"--ops_to={path}" if ops else f"--trace_to={path}"]
    # What this side changes comes last: absl keeps the last value of a flag given twice.
    args = [sys.executable, "-m", "harness.diverge", *internal, *argv, *extra]
    result = subprocess.run(args, env={**os.environ, **env_vars}, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
        raise UsageError(f"run {side} failed: {(lines or ['see its output'])[-1].removeprefix('error: ')}")
    return path


def _trial_argv() -> list[str]:
    """The command line's trial flags, passed on to both runs (diverge's own flags stay here)."""
    own = ("--output_dir", "--traces", "--b_flip_bit", "--b_env", "--trace_to", "--ops", "--noops", "--verify",
           "--noverify")
    return [a for a in sys.argv[1:] if not a.startswith(own)]


def main(argv: list[str]) -> int:
    del argv
    if FLAGS.trace_to:
        write_trace(Path(FLAGS.trace_to))
        return 0
    if FLAGS.ops_to:
        write_op_trace(Path(FLAGS.ops_to))
        return 0
    output_dir = Path(value_or("output_dir", "results/diverge"))
    output_dir.mkdir(parents=True, exist_ok=True)
    if FLAGS.traces:
        if len(FLAGS.traces) != 2:
            raise UsageError("--traces takes two files: --traces=a.npz,b.npz")
        paths = [Path(p) for p in FLAGS.traces]
        b_differs, shared, b_extra, env_vars = {}, [], [], {}
        description = f"comparing traces {paths[0]} (A) and {paths[1]} (B)"
    else:
        env_vars = {}
        for item in FLAGS.b_env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise UsageError(f"--b_env takes NAME=VALUE pairs, got {item!r}")
            env_vars[name] = value
        config = trial_flags.config_from_flags()  # bad trial flags: one sentence here, not from both runs
        b_extra = [f"--flip_bit={FLAGS.b_flip_bit}"] if FLAGS.b_flip_bit is not None else []
        b_differs = {"flip_bit": FLAGS.b_flip_bit, "env": env_vars}
        shared = _trial_argv()
        paths = [_run_side("a", shared, output_dir, [], {}), _run_side("b", shared, output_dir, b_extra, env_vars)]
        if FLAGS.b_flip_bit is not None:
            # The bit probe: a third run, A with another dropout seed, shows how far apart runs are
            # whose predictions do differ, so B's growth can say how long it would take to get there.
            reference_seed = trial_flags.seeds_from_flags().dropout + 1
            paths.append(_run_side("reference", shared, output_dir, [f"--dropout_seed={reference_seed}"], {}))
        changes = ", ".join([*(f"flip_bit={FLAGS.b_flip_bit}" for _ in b_extra),
                             *(f"{k}={v}" for k, v in env_vars.items())])
        description = (f"{config.benchmark}: run A as given; run B " + (f"with {changes}" if changes else "identical")
                       + " (each in a fresh process)")
    a, b, *reference = (load_trace(p) for p in paths)
    found = compare(a, b)
    drift = growth(a, b, reference[0] if reference else None)
    record = {"schema": DIVERGENCE_SCHEMA,
              "created_at": utc_timestamp(),
              "traces": [str(p) for p in paths], "run_b_differs_by": b_differs,
              "context": [json.loads(str(t["context"])) if "context" in t else None for t in (a, b)],
              "final_weights_equal": str(a.get("weights_sha256")) == str(b.get("weights_sha256")), **found,
              "growth": drift}
    contexts = record["context"]
    said = [format_divergence(found, description)]
    if FLAGS.ops and found["diverged"] and not FLAGS.traces and found["stage"] != "run length":
        try:
            record["first_op"], record["verify"] = _first_op(found, shared, output_dir, b_extra, env_vars, contexts)
        except UsageError as error:  # the step and layer found stand: say why there is no op, keep the record
            record["first_op"] = record["verify"] = None
            said.append(f"No op-level verdict: {error}.")
        else:
            said.append(format_first_op(record["first_op"]))
            if record["verify"]:
                said.append(_format_verify(record["verify"]))
    write_json(output_dir / DIVERGENCE_FILE, record)
    print("\n".join(said))
    if drift is not None and found["diverged"]:
        print(format_growth(drift))
        plot_growth(drift, output_dir / "growth.png")
        print(f"plot: {output_dir / 'growth.png'}")
    print(f"record: {output_dir / DIVERGENCE_FILE}")
    return 0


def _first_op(found: dict, shared: list[str], output_dir: Path, b_extra: list[str], env_vars: dict[str, str],
              contexts: list) -> tuple[dict, dict | None]:
    """Both sides again, each in a fresh process, with every op of every step fingerprinted: the first op where
    they part and its cause; with --verify, both sides re-run with its remedy."""
    paths = [_run_side("a", shared, output_dir, [], {}, ops=True),
             _run_side("b", shared, output_dir, b_extra, env_vars, ops=True)]
    part = first_op(*(load_op_trace(p) for p in paths))
    part = {**part, **cause_of(part, env_vars, contexts), "traces": [str(p) for p in paths]}
    if not FLAGS.verify:
        return part, None
    remedy = part["remedy"]
    if remedy is None:
        return part, {"remedy": None, "diverged": None, "first_step": None, "stage": None}
    env_a, env_b, extra = {}, dict(env_vars), []
    if remedy == "xla off":
        env_a["TF_XLA_FLAGS"] = env_b["TF_XLA_FLAGS"] = ""
    elif remedy == "op determinism":
        extra = ["--determinism=on"]
    else:
        env_b = {k: v for k, v in env_vars.items() if k not in ENVIRONMENT_CAUSES}
    verify_dir = output_dir / "verify"
    verify_dir.mkdir(exist_ok=True)
    again = compare(load_trace(_run_side("a", shared, verify_dir, extra, env_a)),
                    load_trace(_run_side("b", shared, verify_dir, [*b_extra, *extra], env_b)))
    return part, {"remedy": remedy, "diverged": again["diverged"], "first_step": again["first_step"],
                  "stage": again["stage"], "steps_compared": again["steps_compared"]}


def _format_verify(verified: dict) -> str:
    if verified["remedy"] is None:
        return "--verify: the harness has no remedy to apply for this cause."
    with_it = f"--verify: with {REMEDIES[verified['remedy']]}"
    if not verified["diverged"]:
        return f"{with_it}, the runs agree: all {verified['steps_compared']} steps are bitwise identical."
    return f"{with_it}, the runs still part, at step {verified['first_step']} ({verified['stage']})."


if __name__ == "__main__":
    cli.run(main, writes_records=True)
