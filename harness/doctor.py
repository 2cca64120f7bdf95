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
kernel; other data values (drawn at random with no seed) are named with the
lines that drew them. It ends with the smallest change that makes the script
reproducible, as text that runs where it is printed (it names Keras as the
script imports it, or imports it); --verify makes exactly that change in a copy
(OUTPUT_DIR/SCRIPT.fixed.py) and runs the copy twice to show it works. When
the runs match, it measures what would break them elsewhere: oneDNN off, one
thread. Models one builder made with the same arguments in one run are compared
with each other too ("why do my two fits differ?"), with the change that makes
them equal (seeding inside the builder), verified with --verify.
With --resume_at=K it asks instead whether a resumed run replays an uninterrupted one (restart replay): it runs
the script whole, then interrupted at the end of epoch K of its first fit (the process ends there, as a
preemption ends it) and resumed in a third fresh process the way the script resumes (its own
`keras.callbacks.BackupAndRestore`, whose backup_dir the doctor moves into OUTPUT_DIR; where it has none, the
harness's checkpoint of that fit: weights, optimizer state, every SeedGenerator's and Keras's global generator's
state), compares the final weights, and names each state the resumed run lacks where epoch K + 1 begins. Where
BackupAndRestore leaves the random generators out, the fix is a BackupAndRestore that backs them up too;
--verify runs the three processes again with it.
Writes OUTPUT_DIR/doctor.json (`harness.doctor/1`) and each run's observations.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from absl import flags

from harness import cli
from harness.analysis import script_edits
from harness.analysis.doctor_verdicts import (
    builder_fix,
    compare_fits,
    explain,
    explain_within,
    fix_for,
    runs_match,
    within_run,
)
from harness.analysis.keras_probe import BACKUP_AND_RESTORE, DETERMINISM
from harness.analysis.restart_replay import script_verdict
from harness.errors import UsageError, meaningful_lines
from harness.flags import value_or
from harness.platform import known_ops
from harness.redaction import redact_args
from harness.schema import DOCTOR_FILE, DOCTOR_SCHEMA
from harness.studies.records import read_records, utc_timestamp, write_json

FLAGS = flags.FLAGS
flags.declare_key_flag("output_dir")  # shared: its --help lists it with the doctor's own
flags.DEFINE_integer("steps", 20, "Train steps observed per fitted model; each fit stops after them.", lower_bound=1)
flags.declare_key_flag("verify")  # shared with diverge (harness/flags.py)
flags.DEFINE_integer("resume_at", None, "Restart replay: interrupt the script's first fit at the end of this epoch, "
                     "resume it in a fresh process, and say whether it ends where the uninterrupted run does.",
                     lower_bound=1)
# subprocess overflows its C time type past about 9 * 10**9 seconds (a traceback); a week is past any observed run.
flags.DEFINE_integer("timeout", 900, "Seconds a run of the script may take (at most a week).", lower_bound=1,
                     upper_bound=7 * 24 * 3600)


def run_observed(script: Path, args: list[str], out: Path, steps: int, mode: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 900, reference: Path | None = None,
                 run_as: Path | None = None, failures: list[str] | None = None) -> list[dict[str, Any]]:
    """One observed run of the script in a fresh process; its fits' observations. With a `reference` (another
    run's observations), the run ends at its first difference from it. `run_as`: the user's script that
    `script` (a fixed copy) stands in for. A script that fails after its fits completed (saving, plotting,
    reading a metric the shortened fit did not log) still gives them: what it said goes to `failures`."""
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "harness.keras_probe", str(out), str(steps), mode or "-",
               str(reference or "-"), str(run_as or "-"), str(script), *args]
    harness_root = str(Path(__file__).resolve().parents[1])
    environ = {**os.environ, **(env or {}),
               "PYTHONPATH": os.pathsep.join(p for p in (harness_root, os.environ.get("PYTHONPATH")) if p)}
    try:
        result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UsageError(f"{run_as or script} ran longer than --timeout={timeout:.0f}s") from None
    fits = read_records(out) if out.exists() else []
    if result.returncode != 0:
        said = meaningful_lines(result.stderr) or ["no message"]
        # The exception's own line (`ValueError: ...`) says why; Keras adds context lines after it.
        last = next((line for line in reversed(said) if re.match(r"^[A-Za-z_.]+(Error|Exception|Exit)\b", line)),
                    said[-1])
        if not fits or any(fit.get("raised") for fit in fits):
            what = f"{script} (the fixed copy of {run_as})" if run_as else str(script)
            raise UsageError(f"{what} {' '.join(redact_args(args))} failed (exit code {result.returncode}): "
                             f"{last}".replace("  ", " "))
        if failures is not None:
            line = _failing_line(result.stderr, script, run_as or script)
            failures.append(f"after its {len(fits)} fit{'s' * (len(fits) != 1)} the script failed"
                            f"{f' at {line}' if line else ''} (exit code {result.returncode}): {last}")
    if not fits:
        raise UsageError(f"{run_as or script} fitted no Keras model (it never called model.fit); the doctor observes "
                         "fit")
    return fits


def _failing_line(stderr: str, script: Path, shown_as: Path) -> str | None:
    """`train.py:42`: the script's innermost line in the traceback, named as the user's script."""
    lines = re.findall(r'File "([^"]+)", line (\d+)', stderr)
    own = [number for file, number in lines if Path(file).name == script.name]
    return f"{shown_as.name}:{own[-1]}" if own else None


def observed_pair(script: Path, args: list[str], work: Path, name: str, steps: int, timeout: float,
                  mode: str | None = None, run_as: Path | None = None,
                  failures: list[str] | None = None) -> list[list[dict[str, Any]]]:
    """Two observed runs, WORK/NAME_a.jsonl and NAME_b.jsonl; the second stops each fit at its first difference."""
    first = run_observed(script, args, work / f"{name}_a.jsonl", steps, mode=mode, timeout=timeout, run_as=run_as,
                         failures=failures)
    return [first, run_observed(script, args, work / f"{name}_b.jsonl", steps, mode=mode, timeout=timeout,
                                reference=work / f"{name}_a.jsonl", run_as=run_as, failures=failures)]


def confirm_kernel(script: Path, args: list[str], work: Path, steps: int, timeout: float,
                   document: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Everything the script seeds was equal, yet the weights parted: run twice more with op determinism
    on. Equal then: a kernel it was, and op determinism is the fix. A run that stops: an op without a
    deterministic kernel, named with its alternative. Still different: not a kernel but randomness the
    seeds do not reach. Prints the finding; returns the fix's edits, or advice where no edit is the fix."""
    try:
        runs = observed_pair(script, args, work, "determinism", steps, timeout, mode=DETERMINISM)
    except UsageError as error:
        alternative = known_ops.alternative_for(str(error))
        document["kernel_check"] = "op without a deterministic kernel"
        print(f"With op determinism on, the script stops: {error}." +
              (f" Use {alternative} instead." if alternative else ""))
        return ([], alternative) if alternative else (script_edits.op_determinism_at_top(script), None)
    if runs_match(*runs):
        document["kernel_check"] = "confirmed"
        print("Confirmed: with op determinism on, two runs are bitwise identical: a kernel that computes "
              "differently from run to run was the cause.")
        return script_edits.op_determinism_at_top(script), None
    document["kernel_check"] = "not a kernel"
    print("With op determinism on, the runs still differ: not a kernel, but randomness the seeds do not "
          "reach (random numbers drawn in the model's own code outside Keras's seeding, or from the clock).")
    return script_edits.seeding_at_top(script), None


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


def optimizer_evidence(findings: list[dict[str, Any]]) -> str | None:
    """What the observed runs show of the optimizer: a fit whose two runs stayed equal through every step
    applied the same updates to the same weights and gradients, so its update rule is deterministic."""
    equal = [f for f in findings if f["cause"] is None and f.get("steps_compared")]
    if not equal:
        return None
    return (f"with equal starts, two runs of this script repeat its every update bit for bit over the first "
            f"{min(f['steps_compared'] for f in equal)} steps")


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise UsageError("name the training script: python -m harness.doctor train.py [its arguments]")
    script, args = Path(argv[1]), argv[2:]
    if not script.is_file():
        raise UsageError(f"no such script {script}")
    output_dir = Path(value_or("output_dir", f"results/doctor/{script.stem}"))
    output_dir.mkdir(parents=True, exist_ok=True)
    steps, timeout = FLAGS.steps, FLAGS.timeout
    if FLAGS.resume_at is not None:
        return restart_replay(script, args, output_dir, FLAGS.resume_at, steps, timeout)
    print(f"Running {' '.join([str(script), *redact_args(args)])} twice (fresh processes), observing the first {steps} "
          "steps of each model it fits ...", flush=True)
    failures: list[str] = []
    runs = observed_pair(script, args, output_dir, "run", steps, timeout, failures=failures)
    if len(runs[0]) != len(runs[1]):
        raise UsageError(f"the two runs fitted {len(runs[0])} and {len(runs[1])} models; " +
                         (f"{script.name}: {failures[-1]}" if failures else
                          "the script's control flow itself differs between runs"))
    findings = [compare_fits(a, b) for a, b in zip(*runs, strict=True)]
    groups = within_run(runs[0])
    document: dict[str, Any] = {"schema": DOCTOR_SCHEMA, "created_at": utc_timestamp(), "script": str(script),
                                "args": redact_args(args), "steps_observed": steps, "fits": findings,
                                "seeding": runs[0][0]["seeding_before"], "within_run": groups,
                                "reproducible": not any(f["cause"] for f in findings)}
    print("\n".join(explain(found, a, b) for found, a, b in zip(findings, *runs, strict=True)))
    if failures:
        # The first failure said (the second run stops its fits early, and may fail for that alone).
        document["script_failed"] = failures[0]
        print(f"{script.name}: {failures[0]}. The verdicts above are on the fits observed before it.")
    evidence = optimizer_evidence(findings)
    edits: list[dict[str, Any]] = []
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
        causes = sorted({cause for f in findings for cause in f["causes"]})
        edits, advice = (confirm_kernel(script, args, output_dir, steps, timeout, document) if causes == ["kernel"]
                         else (fix_for(findings, runs[0], script), None))
        document["fix"] = advice or script_edits.fix_text(edits, script.name)
        document["fix_edits"] = edits
        print(f"\nThe smallest change, in {script.name}:\n{document['fix']}")
        if FLAGS.verify and edits:
            same = runs_match(*observed_pair(_fixed_copy(script, edits, output_dir), args, output_dir, "verify",
                                             steps, timeout, run_as=script))
            document["verified"] = same
            print(f"Verified in a copy with exactly this change ({output_dir / (script.stem + '.fixed.py')}): two "
                  f"runs {'are bitwise identical' if same else 'STILL differ'} over the first {steps} steps of each "
                  "fit.")
            if same:
                evidence = evidence or (f"with the change above, two runs repeat its every update bit for bit over "
                                        f"the first {steps} steps")
        elif not FLAGS.verify:
            print("Pass --verify to run a copy of the script with it.")
    within_run_report(script, args, groups, edits, evidence, output_dir, document)
    stops = sum(1 for fit in runs[1] if fit.get("stopped"))
    print(f"(Each fit was stopped after {steps} steps: --steps sets how many are observed"
          + (f"; the second run stopped {stops} of them at their first difference from the first." if stops else ".")
          + ")")
    write_json(output_dir / DOCTOR_FILE, document)
    print(f"record: {output_dir / DOCTOR_FILE}")
    return 0


def replay_runs(script: Path, args: list[str], work: Path, name: str, epoch: int, steps: int, timeout: float,
                run_as: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first fit of three fresh runs (WORK/NAME_observe, _interrupt, _resume.jsonl): uninterrupted, interrupted
    at the end of `epoch`, resumed from there; returns the uninterrupted and the resumed one."""
    directory = work / f"{name}_state"  # the backups and checkpoint of these runs, none of the script's own
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    shown = run_as or script

    def first_fit(phase: str) -> dict[str, Any]:
        return run_observed(script, args, work / f"{name}_{phase}.jsonl", steps, mode=f"{phase}:{epoch}:{directory}",
                            timeout=timeout, run_as=run_as)[0]

    uninterrupted = first_fit("observe")
    epochs = int(uninterrupted["epochs"])
    if epoch >= epochs:
        raise UsageError(f"--resume_at={epoch} is not before the last epoch of the first fit of {shown} (at "
                         f"{uninterrupted['line']}: {epochs} epoch{'s' * (epochs != 1)}), so there is nothing to "
                         f"resume: give an epoch from 1 to {epochs - 1}" if epochs > 1 else
                         f"the first fit of {shown} (at {uninterrupted['line']}) trains 1 epoch, so it cannot be "
                         "interrupted between epochs and resumed")
    interrupted = first_fit("interrupt")
    if interrupted.get("interrupted") != epoch:
        raise UsageError(f"the interrupted run of {shown} did not reach the end of epoch {epoch} of its first fit "
                         "(the script's control flow differs between runs)")
    if interrupted["resume_state"] != uninterrupted["resume_state"]:
        raise UsageError(f"two runs of {shown} already differ at the end of epoch {epoch}, before any resume: make "
                         "it reproducible first (run the doctor without --resume_at)")
    return uninterrupted, first_fit("resume")


def restart_replay(script: Path, args: list[str], output_dir: Path, epoch: int, steps: int, timeout: float) -> int:
    """--resume_at: does the script's first fit, interrupted at the end of `epoch` and resumed in a fresh process,
    end where the uninterrupted one does? What the resumed run lacks, the fix, and with --verify, the fix run."""
    print(f"Running {' '.join([str(script), *redact_args(args)])} whole, then interrupted at the end of epoch {epoch} "
          "of its first fit and resumed (three fresh processes) ...", flush=True)
    uninterrupted, resumed = replay_runs(script, args, output_dir, "resume", epoch, steps, timeout)
    found = script_verdict(uninterrupted, resumed, epoch)
    document: dict[str, Any] = {"schema": DOCTOR_SCHEMA, "created_at": utc_timestamp(), "script": str(script),
                                "args": redact_args(args), "resume": found}
    print(found["message"])
    if not found["replays"]:
        generators = any("random generator state of layer" in state for state in found["missed"])
        edits = script_edits.backup_with_generators(script) \
            if generators and found["resumed_by"] == BACKUP_AND_RESTORE else []
        if edits:
            found["fix"] = script_edits.fix_text(edits, script.name)
            found["fix_edits"] = edits
            print(f"\nKeras's BackupAndRestore saves the weights and the optimizer, not the random generators' "
                  f"states. The smallest change, in {script.name}:\n{found['fix']}")
            if FLAGS.verify:
                copy = _fixed_copy(script, edits, output_dir, "resume_fixed")
                fixed = script_verdict(*replay_runs(copy, args, output_dir, "resume_verify", epoch, steps, timeout,
                                                    run_as=script), epoch)
                found["verified"] = fixed["replays"]
                print(f"Verified in a copy with exactly this change ({copy}): the resumed run "
                      f"{'replays the uninterrupted one bit for bit' if fixed['replays'] else 'STILL differs'}"
                      f"{'' if fixed['replays'] else ': ' + fixed['message']}.")
            else:
                print("Pass --verify to run a copy of the script with it.")
        else:
            print("The doctor has no change to propose for this: save and restore what is named above with the "
                  "rest of the training state.")
    write_json(output_dir / DOCTOR_FILE, document)
    print(f"record: {output_dir / DOCTOR_FILE}")
    return 0


def within_run_report(script: Path, args: list[str], groups: list[dict[str, Any]], edits: list[dict[str, Any]],
                      evidence: str | None, output_dir: Path, document: dict[str, Any]) -> None:
    """The models one builder made with the same arguments in one run: equal or not, why, and the change that
    makes them equal (seeding inside the builder, over the fix above), verified in a copy with --verify."""
    if not groups:
        return
    print()
    for group in groups:
        print(explain_within(group, evidence))
    differing = [g for g in groups if g["cause"] in ("init", "data", "dropout")]
    builder_edits = [e for group in differing for e in builder_fix(script, group)]
    if not builder_edits:
        return
    # One edit per line: two groups of one builder share its seeding.
    builder_edits = list({(e["line"], tuple(e["insert"])): e for e in builder_edits}.values())
    document["builder_fix"] = script_edits.fix_text(builder_edits, script.name)
    print(f"For equal models within one run, seed inside the builder, in {script.name}:\n{document['builder_fix']}")
    if FLAGS.verify:
        copy = _fixed_copy(script, edits + builder_edits, output_dir, "builder_fixed")
        fits = run_observed(copy, args, output_dir / "builder_verify.jsonl", FLAGS.steps, timeout=FLAGS.timeout,
                            run_as=script)
        equal = all(g["cause"] is None for g in within_run(fits))
        document["builder_fix_verified"] = equal
        print(f"Verified in a copy with {'both changes' if edits else 'this change'} ({copy}): the models of one "
              f"builder {'are bitwise identical' if equal else 'STILL differ'} within a run, over the first "
              f"{FLAGS.steps} steps of each fit.")


def _fixed_copy(script: Path, edits: list[dict[str, Any]], output_dir: Path, suffix: str = "fixed") -> Path:
    return script_edits.apply(script, edits, output_dir / f"{script.stem}.{suffix}.py")


if __name__ == "__main__":
    flags.FLAGS.set_gnu_getopt(False)  # flags after the script's name are the script's own
    cli.run(main, positional_args=True, writes_records=True)
