"""`python -m harness.gate`: fail a CI build when determinism breaks or numbers regress.

    python -m harness.gate --baseline=ci/baseline.json --candidate=results/digits_mlp/summary.json

Compares two study summaries (or trial-record files, summarized on the fly)
condition by condition and prints a table: rule, condition, baseline,
candidate, threshold, verdict (--junit_xml and --markdown_summary also
write them for CI test reporters and GitHub's job summary). Exit 0 when every rule passes, 1 when any
fails, 2 when an input is unusable (one sentence naming the file and why; the JUnit file then holds one
test case in error with that sentence, and the step summary says ERROR, so CI never shows "no tests").

Every statistical rule fails only when the candidate is worse beyond its
tolerance *and* the measured spread says so (a one-sided test at --alpha):
ten noisy runs must not break a build by chance, nor hide a real regression.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from harness import cli
from harness.analysis.gate_calibration import calibrate, calibration_table
from harness.analysis.gate_render import junit_xml, render, unusable_junit_xml, unusable_markdown
from harness.analysis.gate_rules import (
    DEFAULT_THRESHOLDS,
    RULES,
    THRESHOLD_MEANINGS,
    check_comparable,
    evaluate,
    thresholds_from,
)
from harness.analysis.summary import load_summary
from harness.errors import UsageError
from harness.files import check_output_file, replace_atomically
from harness.redaction import redact_text
from harness.table import format_table

FLAGS = flags.FLAGS
flags.DEFINE_string("baseline", None, "Baseline summary.json, trials.jsonl, or a study directory.")
flags.DEFINE_string("candidate", None, "Candidate summary.json, trials.jsonl, or a study directory.")
flags.DEFINE_string("rules", None, "JSON file of thresholds (keys as the flags below) and optional "
                    '"skip" and "require" lists of rules.')
flags.DEFINE_list("skip", [], f"Rules not to apply, of {', '.join(RULES)}.")
flags.DEFINE_list("require", [], "Rules off by default to apply: replay (every run of the candidate's `resume` "
                  "condition, resumed from its checkpoint in a fresh process, replays the uninterrupted run bit for "
                  "bit and ends at control's bits; docs/gate.md).")
flags.DEFINE_enum("format", "text", ["text", "markdown", "json"], "Output format.")
flags.DEFINE_string("junit_xml", None, "Also write the verdicts as JUnit XML here (one test case per rule check), "
                    "for GitLab, Jenkins and GitHub test reporters.")
flags.DEFINE_string("markdown_summary", None, "Also append the Markdown verdicts to this file, e.g. "
                    "--markdown_summary=\"$GITHUB_STEP_SUMMARY\" (the job's summary page on GitHub Actions).")
flags.DEFINE_list("calibrate", [], "Calibrate instead of gating: baseline studies of one configuration (directories, "
                  "summary.json or trials.jsonl files, at least 2) whose measured spread sets each threshold, "
                  "written to --write_rules (docs/gate.md).")
flags.DEFINE_string("write_rules", None, "Where --calibrate writes the rules file, e.g. "
                    "benchmarks/baselines/ci_rules.json.")
for _name, _value in DEFAULT_THRESHOLDS.items():
    _meaning = THRESHOLD_MEANINGS[_name]
    flags.DEFINE_float(_name, None, f"{_meaning[0].upper()}{_meaning[1:]}; default {_value}.")


def main(argv: list[str]) -> int:
    del argv
    if FLAGS.calibrate:
        return _calibrate()
    # Where each output flag writes: one rule for both (files.check_output_file).
    outputs = {flag: check_output_file(Path(FLAGS[flag].value), flag)
               for flag in ("junit_xml", "markdown_summary") if FLAGS[flag].value}
    names = (FLAGS.baseline, FLAGS.candidate)
    try:
        return _gate(names, outputs)
    except UsageError as error:
        # CI reads these files, not stderr: an unusable input is an error there too.
        if "junit_xml" in outputs:
            replace_atomically(outputs["junit_xml"], unusable_junit_xml(str(error), names))
        if "markdown_summary" in outputs:
            _append(outputs["markdown_summary"], unusable_markdown(str(error), names))
        raise


def _gate(names: tuple[str, str], outputs: dict[str, Path]) -> int:
    if not FLAGS.baseline or not FLAGS.candidate:
        raise UsageError("give both --baseline=FILE and --candidate=FILE")
    thresholds, skipped = thresholds_from(FLAGS.rules, {k: FLAGS[k].value for k in DEFAULT_THRESHOLDS},
                                          FLAGS.skip, FLAGS.require)
    baseline, candidate = load_summary(FLAGS.baseline), load_summary(FLAGS.candidate)
    notes = check_comparable(baseline, candidate, names)
    verdicts = evaluate(baseline, candidate, thresholds, skipped)
    print(render(verdicts, notes, FLAGS.format, names))
    if "junit_xml" in outputs:
        replace_atomically(outputs["junit_xml"], junit_xml(verdicts, names))
    if "markdown_summary" in outputs:
        _append(outputs["markdown_summary"], render(verdicts, notes, "markdown", names))
    return 1 if any(v.passed is False for v in verdicts) else 0


def _calibrate() -> int:
    """Thresholds from the baseline studies' measured spread, written as a rules file; the table says where
    each came from."""
    if not FLAGS.write_rules:
        raise UsageError("--calibrate writes a rules file: give --write_rules=FILE (e.g. "
                         "benchmarks/baselines/ci_rules.json)")
    rules_path = check_output_file(Path(FLAGS.write_rules), "write_rules")
    if FLAGS.baseline or FLAGS.candidate:
        raise UsageError("--calibrate writes thresholds from baseline studies and gates nothing: leave out "
                         "--baseline and --candidate, or --calibrate")
    resolved = [Path(name).resolve() for name in FLAGS.calibrate]
    twice = next((name for name, path in zip(FLAGS.calibrate, resolved, strict=True) if resolved.count(path) > 1),
                 None)
    if twice:
        raise UsageError(f"--calibrate names {twice} more than once; each baseline study counts once (run the "
                         "study again for another)")
    rules = calibrate([(name, load_summary(name)) for name in FLAGS.calibrate])
    replace_atomically(rules_path, json.dumps(rules, indent=2) + "\n")
    print(f"calibrated from {len(FLAGS.calibrate)} baseline studies: "
          f"{', '.join(rules['calibrated_from']['studies'])}")
    print(format_table(*calibration_table(rules)))
    print(f"wrote {redact_text(FLAGS.write_rules)}")
    return 0


def _append(path: Path, markdown: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # as replace_atomically makes --junit_xml's
    with open(path, "a") as summary:  # GitHub's step summary collects every step's lines
        summary.write(redact_text(markdown) + "\n")


if __name__ == "__main__":
    cli.run(main)
