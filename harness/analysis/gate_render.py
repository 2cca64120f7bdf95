"""The gate's verdicts as text, Markdown (a CI comment) or JSON."""

from __future__ import annotations

import dataclasses
import json

from harness.analysis.gate_rules import Verdict
from harness.table import format_table


def render(verdicts: list[Verdict], notes: list[str], fmt: str, names: tuple[str, str]) -> str:
    failed = [v for v in verdicts if v.passed is False]
    outcome = f"FAIL: {len(failed)} of {len(verdicts)} rule check(s) failed" if failed else \
        f"PASS: all {sum(v.passed is True for v in verdicts)} rule check(s) passed"
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
