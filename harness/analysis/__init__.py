"""What records say: statistics, the study summary, divergence of two traced runs."""

from __future__ import annotations

from pathlib import Path


def build_report(input_dir: Path, output_dir: Path) -> list[Path]:
    """`study_report.build_report`, imported when a report is built: that module loads matplotlib and
    TensorFlow, which `python -m harness.report --help` does not wait for (tests/programs/test_help.py)."""
    from harness.analysis.study_report import build_report

    return build_report(input_dir, output_dir)
