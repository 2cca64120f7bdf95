"""`python -m harness.doctor [--steps=N] [--verify] SCRIPT.py [SCRIPT ARGS]`: why do two runs of my script differ?

    python -m harness.doctor examples/mnist_mlp.py
    python -m harness.doctor --verify train.py --epochs=50

Runs the user's unmodified Keras script twice, each in a fresh process with
the same arguments, observed from the inside (`harness.keras_probe`): for every
model it fits, the initial weights, the state of every `SeedGenerator`, and per
step the batch's content and the weights after the step; and every call that
orders data at random, with its line. The first run stops each fit after
--steps steps: the first steps tell where two runs part. The second stops each
fit at its first difference from the first.
Then, per fitted model, it says where the runs first differ and why, in the
order a run decides them: initial weights (seeding that does not reach Keras's
initializers), batch order (data shuffling, with the line that shuffled),
dropout masks (unseeded SeedGenerators), or, with all of those equal, a
kernel. It ends with the smallest change that makes the script reproducible;
--verify runs the script twice more with that change (`keras.utils.set_random_seed`
first) to show it works. When the runs match, it measures what would break them
elsewhere: oneDNN off, one thread.
Writes OUTPUT_DIR/doctor.json (`harness.doctor/1`) and each run's observations.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from absl import flags

from harness import cli
from harness.analysis.doctor_verdicts import (
    FIX,
    FIX_SEED,
    OP_DETERMINISM_FIX,
    compare_fits,
    explain,
    fix_for,
    runs_match,
)
from harness.analysis.keras_probe import DETERMINISM
from harness.errors import UsageError, meaningful_lines
from harness.flags import value_or
from harness.platform import known_ops
from harness.schema import DOCTOR_FILE, DOCTOR_SCHEMA
from harness.studies.records import read_records, utc_timestamp, write_json

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Train steps observed per fitted model; each fit stops after them.", lower_bound=1)
flags.DEFINE_bool("verify", False, "Run the script twice more with the proposed fix, to show it works.")
flags.DEFINE_integer("timeout", 900, "Seconds a run of the script may take.", lower_bound=1)


def run_observed(script: Path, args: list[str], out: Path, steps: int, seed: int | str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 900,
                 reference: Path | None = None) -> list[dict[str, Any]]:
    """One observed run of the script in a fresh process; its fits' observations. With a `reference` (another
    run's observations), the run ends at its first difference from it."""
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "harness.keras_probe", str(out), str(steps),
               "-" if seed is None else str(seed), str(reference or "-"), str(script), *args]
    harness_root = str(Path(__file__).resolve().parents[1])
    environ = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join(p for p in (harness_root, os.environ.get("PYTHONPATH")) if p)}
    try:
        result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{script} ran longer than --timeout={timeout:.0f}s") from None
    if result.returncode != 0:
        said = meaningful_lines(result.stderr) or ["no message"]
        # The exception's own line (`ValueError: ...`) says why; Keras adds context lines after it.
        last = next((line for line in reversed(said) if re.match(r"^[A-Za-z_.]+(Error|Exception|Exit)\b", line)),
                    said[-1])
        raise UsageError(f"{script} {' '.join(args)} failed (exit code {result.returncode}): {last}".replace("  ", " "))
    fits = read_records(out)
    if not fits:
        raise UsageError(f"{script} fitted no Keras model (it never called model.fit); the doctor observes fit")
    return fits


def confirm_kernel(script: Path, args: list[str], work: Path, steps: int, timeout: float,
                   document: dict[str, Any]) -> str:
    """Everything the script seeds was equal, yet the weights parted: run twice more with op determinism
    on. Equal then: a kernel it was, and op determinism is the fix. A run that stops: an op without a
    deterministic kernel, named with its alternative. Still different: not a kernel but randomness the
    seeds do not reach. Prints the finding; returns the fix."""
    try:
        runs = observed_pair(script, args, work, "determinism", steps, timeout, seed=DETERMINISM)
    except UsageError as error:
        alternative = known_ops.alternative_for(str(error))
        document["kernel_check"] = "op without a deterministic kernel"
        print(f"With op determinism on, the script stops: {error}." +
              (f" Use {alternative} instead." if alternative else ""))
        return alternative or OP_DETERMINISM_FIX
    if runs_match(*runs):
        document["kernel_check"] = "confirmed"
        print("Confirmed: with op determinism on, two runs are bitwise identical: a kernel that computes "
              "differently from run to run was the cause.")
        return OP_DETERMINISM_FIX
    document["kernel_check"] = "not a kernel"
    print("With op determinism on, the runs still differ: not a kernel, but randomness the seeds do not "
          "reach (random numbers drawn in the model's own code outside Keras's seeding, or from the clock).")
    return FIX


def environment_checks(script: Path, args: list[str], reference: Path, work: Path,
                       steps: int, timeout: float) -> list[dict[str, Any]]:
    """For a reproducible script: do the runs still match with oneDNN off, or one thread? Measured."""
    checks, reference_fits = [], read_records(reference)
    for label, env in (("oneDNN off", {"TF_ENABLE_ONEDNN_OPTS": "0"}),
                       ("one thread", {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"})):
        fits = run_observed(script, args, work / f"run_{label.replace(' ', '_')}.jsonl", steps, env=env,
                            timeout=timeout, reference=reference)
        same = runs_match(reference_fits, fits)
        checks.append({"change": label, "env": env, "same_bits": same})
    return checks


def observed_pair(script: Path, args: list[str], work: Path, name: str, steps: int, timeout: float,
                  seed: int | str | None = None) -> list[list[dict[str, Any]]]:
    """Two observed runs, WORK/NAME_a.jsonl and NAME_b.jsonl; the second stops each fit at its first difference."""
    first = run_observed(script, args, work / f"{name}_a.jsonl", steps, seed=seed, timeout=timeout)
    return [first, run_observed(script, args, work / f"{name}_b.jsonl", steps, seed=seed, timeout=timeout,
                                reference=work / f"{name}_a.jsonl")]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise UsageError("name the training script: python -m harness.doctor train.py [its arguments]")
    script, args = Path(argv[1]), argv[2:]
    if not script.is_file():
        raise UsageError(f"no such script {script}")
    output_dir = Path(value_or("output_dir", f"results/doctor/{script.stem}"))
    output_dir.mkdir(parents=True, exist_ok=True)
    steps, timeout = FLAGS.steps, FLAGS.timeout
    print(f"Running {script} {' '.join(args)} twice (fresh processes), observing the first {steps} steps of "
          "each model it fits ...".replace("  ", " "), flush=True)
    runs = observed_pair(script, args, output_dir, "run", steps, timeout)
    if len(runs[0]) != len(runs[1]):
        raise UsageError(f"the two runs fitted {len(runs[0])} and {len(runs[1])} models; the script's control "
                         "flow itself differs between runs")
    findings = [compare_fits(a, b) for a, b in zip(*runs, strict=True)]
    lines = [explain(found, run) for found, run in zip(findings, runs[0], strict=True)]
    document: dict[str, Any] = {"schema": DOCTOR_SCHEMA, "created_at": utc_timestamp(), "script": str(script),
                                "args": args, "steps_observed": steps, "fits": findings,
                                "seeding": runs[0][0]["seeding_before"], "reproducible": not any(
                                    f["cause"] for f in findings)}
    print("\n".join(lines))
    if document["reproducible"]:
        print(f"\nYour script is reproducible here (over the first {steps} steps of each fit). What would break "
              "it elsewhere, measured here:")
        document["environment"] = environment_checks(script, args, output_dir / "run_a.jsonl", output_dir, steps,
                                                     timeout)
        for check in document["environment"]:
            print(f"  {check['change']}: {'same bits' if check['same_bits'] else 'DIFFERENT bits'}")
        print("  XLA and GPU kernels are not measured here: op determinism (enable_op_determinism) covers GPU "
              "kernels; python -m harness.scan lists the risky ops of a model.")
    else:
        causes = sorted({f["cause"] for f in findings if f["cause"]})
        fix = fix_for(findings, runs[0])
        if causes == ["kernel"]:
            fix = confirm_kernel(script, args, output_dir, steps, timeout, document)
        document["fix"] = fix
        print(f"\nThe smallest change: at the top of {script.name}, before anything random happens,\n    {fix}")
        if FLAGS.verify and fix.startswith(FIX):
            same = runs_match(*observed_pair(script, args, output_dir, "verify", steps, timeout, seed=FIX_SEED))
            document["verified"] = same
            print(f"Verified: with it, two runs {'are bitwise identical' if same else 'STILL differ'} over the "
                  f"first {steps} steps of each fit.")
        elif not FLAGS.verify:
            print("Pass --verify to run the script twice more with it.")
    stops = sum(1 for fit in runs[1] if fit.get("stopped"))
    print(f"(Each fit was stopped after {steps} steps: --steps sets how many are observed"
          + (f"; the second run stopped {stops} of them at their first difference from the first." if stops else ".")
          + ")")
    write_json(output_dir / DOCTOR_FILE, document)
    print(f"record: {output_dir / DOCTOR_FILE}")
    return 0


if __name__ == "__main__":
    flags.FLAGS.set_gnu_getopt(False)  # flags after the script's name are the script's own
    cli.run(main, positional_args=True)
