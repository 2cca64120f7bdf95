"""The gate's verdicts as text, Markdown (a CI comment, a GitHub step summary), JSON or JUnit XML."""

from __future__ import annotations

import dataclasses
import json
from xml.etree import ElementTree

from harness.analysis.gate_rules import Verdict
from harness.table import format_table


def render(verdicts: list[Verdict], notes: list[str], fmt: str, names: tuple[str, str]) -> str:
    failed = [v for v in verdicts if v.passed is False]
    outcome = verdict_line(verdicts)
    if fmt == "json":
        return json.dumps({"verdict": "fail" if failed else "pass", "baseline": names[0], "candidate": names[1],
                           "notes": notes, "rules": [dataclasses.asdict(v) for v in verdicts]}, indent=1)
    headers = ["rule", "condition", "baseline", "candidate", "threshold", "verdict", "detail"]
    rows = [[v.rule, v.condition, v.baseline, v.candidate, v.threshold, v.word, v.detail] for v in verdicts]
    if fmt == "markdown":
        lines = [f"### Determinism gate: {outcome}", "", f"Baseline `{names[0]}`, candidate `{names[1]}`.", "",
                 "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(("**FAIL**" if c == "FAIL" else c.replace("|", "\\|")) for c in row) + " |"
                  for row in rows]
        return "\n".join(lines + [""] + [f"- {note}" for note in notes])
    return "\n".join([f"baseline {names[0]}  vs  candidate {names[1]}", format_table(headers, rows), "",
                      *(f"note: {note}" for note in notes), outcome])


def verdict_line(verdicts: list[Verdict]) -> str:
    """The gate's last line (and its Markdown header): how many checks passed, failed and were skipped, each
    failed check with its numbers, and why each skipped one was, so that a PASS never claims a check it did not
    make (determinism needs 2 repeats) and a FAIL says what failed without the table."""
    counts = {word: sum(v.passed is value for v in verdicts)
              for word, value in (("passed", True), ("failed", False), ("skipped", None))}
    said = ", ".join(f"{n} {word}" for word, n in counts.items() if n)
    failed = "; ".join(failure_text(v) for v in verdicts if v.passed is False)
    skipped = [v for v in verdicts if v.passed is None]
    why = "; ".join(dict.fromkeys(f"{v.rule} ({v.condition}): {v.detail or 'not applicable'}" for v in skipped))
    return (f"{'FAIL' if counts['failed'] else 'PASS'}: {said or 'no rule check made'}"
            + (f"; failed {failed}" if failed else "") + (f"; skipped {why}" if why else ""))


def failure_text(verdict: Verdict) -> str:
    """`accuracy (init): candidate 80.10 against baseline 84.20, threshold >= -0.50 points (detail)`."""
    detail = f" ({verdict.detail})" if verdict.detail else ""
    return (f"{verdict.rule} ({verdict.condition}): candidate {verdict.candidate} against baseline "
            f"{verdict.baseline}, threshold {verdict.threshold}{detail}")


def junit_xml(verdicts: list[Verdict], names: tuple[str, str]) -> str:
    """JUnit XML, as GitLab, Jenkins and GitHub test reporters read it: a test case per rule check
    (`rule[condition]`), failed with its detail, or skipped (not applicable) with why."""
    suite = _suite(names, tests=len(verdicts), failures=sum(v.passed is False for v in verdicts),
                   skipped=sum(v.passed is None for v in verdicts), errors=0)
    for v in verdicts:
        case = ElementTree.SubElement(suite, "testcase", {"classname": f"harness.gate.{v.rule}",
                                                          "name": f"{v.rule}[{v.condition}]"})
        said = f"baseline {v.baseline}, candidate {v.candidate}, threshold {v.threshold}" + \
            (f": {v.detail}" if v.detail else "")
        if v.passed is False:
            ElementTree.SubElement(case, "failure", {"message": failure_text(v), "type": v.rule}).text = said
        elif v.passed is None:
            ElementTree.SubElement(case, "skipped", {"message": v.detail or "not applicable"})
        else:
            ElementTree.SubElement(case, "system-out").text = said
    return _xml(suite)


def unusable_junit_xml(message: str, names: tuple[str, str]) -> str:
    """JUnit XML for a gate that could not compare (exit 2): one test case in error, naming the problem, so that
    a CI test reporter shows an error instead of "no tests"."""
    suite = _suite(names, tests=1, failures=0, skipped=0, errors=1)
    case = ElementTree.SubElement(suite, "testcase", {"classname": "harness.gate", "name": "inputs"})
    ElementTree.SubElement(case, "error", {"message": message, "type": "unusable input"}).text = (
        f"the gate could not compare baseline {names[0]} with candidate {names[1]}: {message}")
    return _xml(suite)


def unusable_markdown(message: str, names: tuple[str, str]) -> str:
    """The step summary of a gate that could not compare (exit 2)."""
    return "\n".join(["### Determinism gate: ERROR", "",
                      f"Baseline `{names[0]}`, candidate `{names[1]}`: the gate could not compare them.", "",
                      f"- {message}", ""])


def _suite(names: tuple[str, str], **counts: int) -> ElementTree.Element:
    """The gate's <testsuite> with its counts, and the two studies it compared as properties."""
    suite = ElementTree.Element("testsuite", {"name": "harness.gate", **{k: str(n) for k, n in counts.items()}})
    properties = ElementTree.SubElement(suite, "properties")
    for key, value in zip(("baseline", "candidate"), names, strict=True):
        ElementTree.SubElement(properties, "property", {"name": key, "value": value or ""})
    return suite


def _xml(suite: ElementTree.Element) -> str:
    ElementTree.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"
