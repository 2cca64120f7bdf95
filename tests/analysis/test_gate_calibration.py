"""The gate's thresholds calibrated from the spread of N baseline studies (harness/analysis/gate_calibration.py),
and `harness.gate --calibrate` writing them as a rules file the gate reads."""

import copy
import json

import pytest
from conftest import run_program

from harness.analysis import gate_rules
from harness.analysis.summary import load_summary


@pytest.fixture
def summary(small_study):
    return load_summary(small_study / "summary.json")


def _row(summary, name):
    return next(row for row in summary["conditions"] if row["name"] == name)


def _write(path, summary):
    path.write_text(json.dumps(summary))
    return str(path)


def test_calibration_sets_each_threshold_from_the_baseline_studies_spread(summary, small_study, tmp_path):
    """Three baseline studies: init's mean 0.6 points apart at most, all's SD 1.4x apart, costs up to +30%:
    the thresholds are those, the timing limit never below the default, and the gate reads the rules file it
    writes (its `calibrated_from` says where each value came from)."""
    from harness.analysis.gate_calibration import calibrate

    studies = []
    for shift, sd_factor, high in ((0.0, 1.0, 1.2), (-0.006, 1.4, 1.3), (0.002, 1.1, 1.1)):
        study = copy.deepcopy(summary)
        _row(study, "init")["test_accuracy"]["mean"] += shift
        _row(study, "all")["test_accuracy"]["sd"] *= sd_factor
        study["determinism_cost"] = {**study["determinism_cost"], "ratio": 1.1, "ci95": [1.0, high]}
        studies.append((f"run{len(studies) + 1}", study))
    rules = calibrate(studies)
    # New bits make a fixed-seed run a new draw of the seeds: at least 1.96 sqrt(2) x the seeds' largest SD.
    seed_sd = max(row["test_accuracy"]["sd"] for _, study in studies for row in study["conditions"]
                  if not row["expects_identical_repeats"])
    assert rules["accuracy_tolerance"] == pytest.approx(max(0.008, 1.96 * 2 ** 0.5 * seed_sd))
    assert rules["variance_factor"] == pytest.approx(1.4)
    assert rules["max_determinism_overhead"] == pytest.approx(0.3)
    assert rules["max_slowdown"] >= gate_rules.DEFAULT_THRESHOLDS["max_slowdown"]
    assert rules["calibrated_from"]["studies"] == ["run1", "run2", "run3"]
    assert "0.8 points (init)" in rules["calibrated_from"]["why"]["accuracy_tolerance"]
    # A speed ratio of one step measurement a side (replica groups) says so; a study named by a URL with a
    # password is written and printed redacted (the one redaction of recorded values, harness/redaction.py).
    if len(_row(summary, "control")["step_ms"]) == 1:
        assert "(one sample a side, no interval: not judged)" in rules["calibrated_from"]["why"]["max_slowdown"]
    named = calibrate([("gs://user:hunter2@bucket/run1", studies[0][1]), ("run2", studies[1][1])])
    assert named["calibrated_from"]["studies"] == ["gs://user:<redacted>@bucket/run1", "run2"]
    # Identical studies (the gate's own study run again: the same bits) differ by nothing: what new bits would
    # move a run by still sets the tolerance, and it is never below one test example.
    same = calibrate([("a", summary), ("b", copy.deepcopy(summary))])
    examples = _row(summary, "control")["distribution_sd"]["examples"]
    plain = max(row["test_accuracy"]["sd"] for row in summary["conditions"] if not row["expects_identical_repeats"])
    assert same["accuracy_tolerance"] == pytest.approx(max(1.96 * 2 ** 0.5 * plain, 1 / examples))
    assert same["variance_factor"] == 1.0
    flat = copy.deepcopy(summary)
    for row in flat["conditions"]:
        row["test_accuracy"]["sd"] = 0.0
    assert calibrate([("a", flat), ("b", flat)])["accuracy_tolerance"] == pytest.approx(1 / examples)
    # Through the program: the rules file it writes is one the gate reads.
    paths = [_write(tmp_path / f"run{i}.json", study) for i, (_, study) in enumerate(studies, start=1)]
    rules_file = tmp_path / "ci" / "rules.json"
    result = run_program("harness.gate", f"--calibrate={','.join(paths)}", f"--write_rules={rules_file}")
    assert result.returncode == 0, result.stderr
    assert "accuracy_tolerance" in result.stdout and result.stdout.strip().endswith(f"wrote {rules_file}")
    thresholds, _ = gate_rules.thresholds_from(str(rules_file), {}, [])
    assert thresholds["variance_factor"] == pytest.approx(1.4)
    gated = run_program("harness.gate", f"--baseline={paths[0]}", f"--candidate={small_study}",
                        f"--rules={rules_file}")
    assert gated.returncode in (0, 1) and gated.stdout.strip().splitlines()[-1].startswith(("PASS", "FAIL"))


def test_calibration_needs_two_studies_and_a_file_to_write(summary, tmp_path):
    one = _write(tmp_path / "one.json", summary)
    result = run_program("harness.gate", f"--calibrate={one}", f"--write_rules={tmp_path / 'rules.json'}")
    assert (result.returncode, result.stderr.strip()) == (
        2, "error: calibrating the gate takes at least 2 baseline studies of the same configuration (got 1); run "
           "the study again, e.g. make gate-baseline RUNS=3.")
    result = run_program("harness.gate", f"--calibrate={one},{one}")
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: --calibrate writes a rules file: give --write_rules=FILE (e.g. benchmarks/baselines/ci_rules.json).")
    # The same study named twice is one study, not two that agree; and calibration gates nothing.
    result = run_program("harness.gate", f"--calibrate={one},{tmp_path}/../{tmp_path.name}/one.json",
                         f"--write_rules={tmp_path / 'rules.json'}")
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: --calibrate names {one} more than once; each baseline study counts once (run the study again "
        "for another).")
    result = run_program("harness.gate", f"--calibrate={one},{one}", f"--baseline={one}",
                         f"--write_rules={tmp_path / 'rules.json'}")
    assert result.returncode == 2 and "leave out --baseline and --candidate, or --calibrate" in result.stderr
    assert not (tmp_path / "rules.json").exists()
