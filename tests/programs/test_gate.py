"""The CI gate: each rule passes and fails on real and constructed summaries; unusable input exits 2."""

import copy
import json
import os
import shutil

import pytest
from conftest import REPO, run_program

from harness.analysis import gate_rules
from harness.analysis.summary import load_summary


@pytest.fixture
def summary(small_study):
    return load_summary(small_study / "summary.json")


def _row(summary, name):
    return next(row for row in summary["conditions"] if row["name"] == name)


def _verdicts(baseline, candidate, **thresholds):
    values = {**gate_rules.DEFAULT_THRESHOLDS, **thresholds}
    return {(v.rule, v.condition): v for v in gate_rules.evaluate(baseline, candidate, values)}


def test_a_study_against_itself_passes_every_rule(summary):
    verdicts = _verdicts(summary, copy.deepcopy(summary))
    assert all(v.passed is not False for v in verdicts.values()), verdicts
    rules = {rule for rule, _ in verdicts}
    assert rules == {"failures", "determinism", "accuracy", "variance", "speed", "overhead"}
    assert verdicts[("determinism", "control")].passed is True


def test_two_hashes_in_control_fail_the_determinism_rule_whatever_the_accuracy(summary):
    candidate = copy.deepcopy(summary)
    control = _row(candidate, "control")
    control["weight_hashes"] = ["a" * 64, "b" * 64]
    control["unique_weight_hashes"], control["bitwise_reproducible"] = 2, False
    control["test_accuracy"]["mean"] += 0.05  # better accuracy does not excuse lost determinism
    verdicts = _verdicts(summary, candidate)
    assert verdicts[("determinism", "control")].passed is False
    assert verdicts[("accuracy", "control")].passed is True


def test_a_variant_that_matched_control_must_keep_matching(summary):
    baseline, candidate = copy.deepcopy(summary), copy.deepcopy(summary)
    _row(baseline, "kernels")["matches_control_bitwise"] = True
    _row(candidate, "kernels")["matches_control_bitwise"] = False
    assert _verdicts(baseline, candidate)[("determinism", "kernels = control")].passed is False
    assert _verdicts(baseline, baseline)[("determinism", "kernels = control")].passed is True


def test_a_slower_candidate_fails_the_speed_rule(summary):
    # Step times are set, not measured: a loaded CI runner's real timings can be spread so wide that
    # even a doubling has an interval reaching below the limit, and this tests the rule, not the runner.
    baseline = copy.deepcopy(summary)
    _row(baseline, "control")["step_ms"] = [0.30 + 0.002 * (i % 5) for i in range(10)]
    _row(baseline, "control")["step_ms_median"] = 0.304
    candidate = copy.deepcopy(baseline)
    control = _row(candidate, "control")
    control["step_ms"] = [t * 2 for t in control["step_ms"]]
    control["step_ms_median"] *= 2
    verdict = _verdicts(baseline, candidate)[("speed", "control")]
    assert verdict.passed is False and "2.00x" in verdict.detail
    # Within a generous enough limit it passes.
    assert _verdicts(baseline, candidate, max_slowdown=1.5)[("speed", "control")].passed is True


def _set_accuracy(row, mean, sd, n=10):
    row["test_accuracy"] = {**row["test_accuracy"], "mean": mean, "sd": sd, "n": n}


def test_accuracy_rule_fails_a_real_drop_and_forgives_noise(summary):
    baseline, candidate = copy.deepcopy(summary), copy.deepcopy(summary)
    _set_accuracy(_row(baseline, "all"), 0.870, 0.006)
    _set_accuracy(_row(candidate, "all"), 0.840, 0.006)  # 3 points down, tight spread
    assert _verdicts(baseline, candidate)[("accuracy", "all")].passed is False
    _set_accuracy(_row(candidate, "all"), 0.855, 0.03)  # 1.5 points down, but within the noise
    assert _verdicts(baseline, candidate)[("accuracy", "all")].passed is True
    # Bitwise-identical runs have SD 0: the difference is exact.
    _set_accuracy(_row(baseline, "control"), 0.87, 0.0)
    _set_accuracy(_row(candidate, "control"), 0.85, 0.0)
    assert _verdicts(baseline, candidate)[("accuracy", "control")].passed is False


def test_variance_rule_fails_when_all_sd_grows_beyond_the_factor(summary):
    baseline, candidate = copy.deepcopy(summary), copy.deepcopy(summary)
    _set_accuracy(_row(baseline, "all"), 0.87, 0.005, n=10)
    _set_accuracy(_row(candidate, "all"), 0.87, 0.02, n=10)
    verdict = _verdicts(baseline, candidate)[("variance", "all")]
    assert verdict.passed is False and "4.00x" in verdict.detail
    _set_accuracy(_row(candidate, "all"), 0.87, 0.006, n=10)
    assert _verdicts(baseline, candidate)[("variance", "all")].passed is True


def _cost(ratio, ci95):
    return {"ratio": ratio, "ci95": ci95, "units": 3, "blocks": 48, "method": "interleaved", "components": {}}


def test_overhead_rule_fails_only_when_the_whole_interval_lies_beyond_the_bound(summary):
    assert summary["determinism_cost"]["ratio"] > 0  # the fixture's study measured it, as bench does
    candidate = copy.deepcopy(summary)
    # Deterministic kernels take 3.3x the step time, interval [3.1, 3.5]: beyond +100% at its low end.
    candidate["determinism_cost"] = _cost(3.33, [3.1, 3.5])
    verdict = _verdicts(summary, candidate)[("overhead", "kernels vs control")]
    assert verdict.passed is False and verdict.candidate == "+233.0%"
    assert verdict.detail == "95% CI [+210.0%, +250.0%], 3 units of 16 interleaved blocks"
    assert _verdicts(summary, candidate, max_determinism_overhead=3.0)[("overhead", "kernels vs control")].passed
    # The same median with an interval that reaches below the bound: noise, not a finding.
    candidate["determinism_cost"] = _cost(3.33, [1.5, 7.0])
    assert _verdicts(summary, candidate)[("overhead", "kernels vs control")].passed is True


def test_a_timing_without_an_interval_is_not_judged_however_far_off(summary):
    """A cost of one block pair, or kernels and control timed minutes apart (no interleaved measurement), say
    so and skip: control and kernels timed apart failed a study gated against itself (+245% on identical work)."""
    candidate = copy.deepcopy(summary)
    candidate["determinism_cost"] = _cost(3.45, None)
    verdict = _verdicts(summary, candidate)[("overhead", "kernels vs control")]
    assert (verdict.passed, verdict.candidate, verdict.detail) == (
        None, "+245.0%", "one sample a side, no interval: not judged")
    candidate["determinism_cost"] = None
    verdict = _verdicts(summary, candidate)[("overhead", "kernels vs control")]
    assert verdict.passed is None and verdict.detail.startswith("no interleaved cost measurement in the candidate")
    baseline = copy.deepcopy(summary)
    _row(baseline, "control")["step_ms"], _row(baseline, "control")["step_ms_median"] = [0.3], 0.3
    _row(candidate, "control")["step_ms"], _row(candidate, "control")["step_ms_median"] = [0.9], 0.9
    speed = _verdicts(baseline, candidate)[("speed", "control")]
    assert (speed.passed, speed.detail) == (None, "3.00x, one sample a side, no interval: not judged")
    # Two trials a side (a new user's --repeats=2 without groups) are not "one sample": the sentence counts them.
    _row(baseline, "control")["step_ms"], _row(candidate, "control")["step_ms"] = [0.3, 0.31], [0.9, 0.92]
    speed = _verdicts(baseline, candidate)[("speed", "control")]
    assert speed.passed is None and speed.detail.endswith(
        "2 and 2 step measurements, fewer than 3 a side: no interval, not judged")


@pytest.mark.slow
def test_a_study_gated_against_itself_with_every_core_busy_passes_ten_times_in_a_row(small_study, tmp_path):
    """Loaded with one spinning Python process per usable core (background_load.busy_cores, as env:load=1 does),
    the study's cost is measured again ten times, each summary gated against itself: every rule passes or
    skips, and the overhead rule judges (an interval each time). The loaded intervals need not overlap the idle
    one: under load the cost itself moves (measured in a fresh clone: idle [-0.3%, +7.6%], one loaded run
    [+10.1%, +28.8%]); what must hold is that load never fails the gate."""
    from harness.analysis.summary import load_summary
    from harness.studies import determinism_cost
    from harness.studies.background_load import busy_cores
    from harness.trial.cost import DEFAULT_BLOCKS

    study = tmp_path / "study"
    study.mkdir()
    (study / "trials.jsonl").write_bytes((small_study / "trials.jsonl").read_bytes())
    shutil.copytree(small_study / "per_example", study / "per_example")
    base, seeds, chosen = _small_study_plan()
    with busy_cores() as cores:
        assert cores >= 1
        for attempt in range(10):
            (study / "cost.json").unlink(missing_ok=True)
            determinism_cost.ensure(base, seeds, chosen, study, "smallstudy", DEFAULT_BLOCKS)
            loaded = load_summary(study / "trials.jsonl")
            verdicts = _verdicts(loaded, copy.deepcopy(loaded))
            failed = [v for v in verdicts.values() if v.passed is False]
            assert not failed, (attempt, failed)
            assert verdicts[("overhead", "kernels vs control")].passed is True, verdicts
            low, high = loaded["determinism_cost"]["ci95"]
            assert low <= loaded["determinism_cost"]["ratio"] <= high


def _small_study_plan():
    from conftest import SMALL, STUDY_CONDITIONS

    from harness.studies import conditions
    from harness.trial.config import load_benchmark
    from harness.trial.seeds import SeedSet

    return load_benchmark("digits_mlp", **SMALL), SeedSet.from_base(0), conditions.parse_conditions(STUDY_CONDITIONS)


def test_newly_failing_trials_fail_the_failures_rule(summary):
    candidate = copy.deepcopy(summary)
    row = _row(candidate, "init")
    row["n_failed"], row["failures"] = 2, {"nan_loss": 2}
    verdict = _verdicts(summary, candidate)[("failures", "init")]
    assert verdict.passed is False and "nan_loss x2" in verdict.detail


def test_rules_file_and_flags_override_thresholds(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"max_slowdown": 1.0, "skip": ["speed"]}))
    values, skipped = gate_rules.thresholds_from(str(rules), {"alpha": 0.01, "max_slowdown": None}, ["overhead"])
    assert values["max_slowdown"] == 1.0 and values["alpha"] == 0.01
    assert skipped == {"speed", "overhead", "replay"}  # replay is off unless required


def test_the_replay_rule_is_off_by_default_and_required_fails_a_checkpoint_that_no_longer_replays(summary, tmp_path):
    """Required (--require=replay, or a rules file's "require"), every run of the candidate's `resume` condition
    must replay its uninterrupted run bit for bit and end at control's bits; off by default, nothing asks for it."""
    baseline = copy.deepcopy(summary)
    resume = {**copy.deepcopy(_row(baseline, "control")), "name": "resume", "matches_control_bitwise": True,
              "restart_replay": {"runs": 2, "replayed": 2, "epoch": 1, "step": 90, "first_step": None, "stage": None,
                                 "variables": [], "missed": None, "message": "replays"}}
    baseline["conditions"].append(resume)
    assert ("replay", "resume") not in _verdicts(baseline, baseline)
    _, required = gate_rules.thresholds_from(None, {}, [], ["replay"])
    (tmp_path / "rules.json").write_text(json.dumps({"require": ["replay"]}))
    assert gate_rules.thresholds_from(str(tmp_path / "rules.json"), {}, [])[1] == required == set()

    def replay_verdict(candidate):
        values = gate_rules.DEFAULT_THRESHOLDS
        return next(v for v in gate_rules.evaluate(baseline, candidate, values, required) if v.rule == "replay")

    assert replay_verdict(baseline).passed is True
    broken = copy.deepcopy(baseline)
    missed = "the run parts from the uninterrupted one at step 90: the checkpoint missed the optimizer state"
    _row(broken, "resume")["restart_replay"].update(replayed=1, message=missed)
    verdict = replay_verdict(broken)
    assert (verdict.passed, verdict.baseline, verdict.candidate, verdict.detail) == (False, "2/2 replay", "1/2 replay",
                                                                                     missed)
    drifted = copy.deepcopy(baseline)
    _row(drifted, "resume")["matches_control_bitwise"] = False
    assert replay_verdict(drifted).passed is False
    verdict = replay_verdict(copy.deepcopy(summary))
    assert (verdict.passed, verdict.detail) == (False, "the candidate has no resume condition; run it "
                                                       "(--conditions=...,resume)")
    with pytest.raises(gate_rules.UsageError) as refused:
        gate_rules.thresholds_from(None, {}, [], ["speed"])
    assert str(refused.value) == "unknown rule(s) to require: speed; the rules off by default are replay"


def _write(path, summary):
    path.write_text(json.dumps(summary))
    return str(path)


@pytest.mark.slow
def test_the_program_exits_0_on_pass_and_1_on_fail_with_a_table(small_study, summary, tmp_path):
    passed = run_program("harness.gate", f"--baseline={small_study / 'summary.json'}",
                         f"--candidate={small_study / 'trials.jsonl'}")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS" in passed.stdout and "rule" in passed.stdout and "verdict" in passed.stdout

    slower = copy.deepcopy(summary)
    for name in ("control", "kernels"):
        _row(slower, name)["step_ms"] = [t * 3 for t in _row(slower, name)["step_ms"]]
        _row(slower, name)["step_ms_median"] *= 3
    candidate = _write(tmp_path / "slower.json", slower)
    failed = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={candidate}")
    assert failed.returncode == 1
    assert "FAIL" in failed.stdout and "speed" in failed.stdout

    as_json = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={candidate}", "--format=json")
    assert as_json.returncode == 1
    verdicts = json.loads(as_json.stdout)
    assert verdicts["verdict"] == "fail" and any(not r["passed"] and r["rule"] == "speed" for r in verdicts["rules"])
    markdown = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={candidate}",
                           "--format=markdown")
    assert "| rule |" in markdown.stdout and "**FAIL**" in markdown.stdout


@pytest.mark.slow
def test_junit_xml_has_a_test_case_per_rule_check_and_the_markdown_goes_to_the_step_summary(
        small_study, summary, tmp_path):
    from xml.etree import ElementTree

    import xmlschema

    slower = copy.deepcopy(summary)
    _row(slower, "control")["step_ms"] = [t * 3 for t in _row(slower, "control")["step_ms"]]
    _row(slower, "control")["step_ms_median"] *= 3
    candidate = _write(tmp_path / "slower.json", slower)
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("an earlier step's summary\n")
    args = [f"--baseline={small_study}", f"--candidate={candidate}", f"--junit_xml={tmp_path / 'ci' / 'gate.xml'}",
            f"--markdown_summary={step_summary}"]
    result = run_program("harness.gate", *args, "--format=json")
    assert result.returncode == 1
    rules = json.loads(result.stdout)["rules"]
    xmlschema.XMLSchema(REPO / "tests" / "data" / "junit.xsd").validate(tmp_path / "ci" / "gate.xml")
    suite = ElementTree.parse(tmp_path / "ci" / "gate.xml").getroot()
    cases = suite.findall("testcase")
    assert suite.tag == "testsuite" and len(cases) == len(rules) == int(suite.get("tests"))
    failed = [case.get("name") for case in cases if case.find("failure") is not None]
    assert failed == [f"{r['rule']}[{r['condition']}]" for r in rules if r["passed"] is False]
    assert "speed[control]" in failed and int(suite.get("failures")) == len(failed)
    assert int(suite.get("skipped")) == sum(r["passed"] is None for r in rules)
    appended = step_summary.read_text()
    assert appended.startswith("an earlier step's summary\n### Determinism gate: FAIL") and "**FAIL**" in appended
    # Each failure names itself with its numbers: in the JUnit message, the Markdown header and the last line.
    speed = next(case for case in cases if case.get("name") == "speed[control]").find("failure")
    assert speed.get("message").startswith("speed (control): candidate ") and "threshold <= " in speed.get("message")
    header = appended.splitlines()[1]
    assert "; failed speed (control): candidate " in header
    text = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={candidate}")
    assert "; failed speed (control): candidate " in text.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_gate_that_cannot_compare_writes_a_junit_error_and_an_error_summary(small_study, summary, tmp_path):
    """Exit 2 still leaves CI something to show: one test case in error naming the problem, not "no tests"."""
    from xml.etree import ElementTree

    import xmlschema

    other = _write(tmp_path / "other.json", {**copy.deepcopy(summary), "benchmark": "embedding"})
    step_summary = tmp_path / "step_summary.md"
    result = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={other}",
                         f"--junit_xml={tmp_path / 'gate.xml'}", f"--markdown_summary={step_summary}")
    assert result.returncode == 2 and "cannot be compared" in result.stderr, result.stderr
    xmlschema.XMLSchema(REPO / "tests" / "data" / "junit.xsd").validate(tmp_path / "gate.xml")
    suite = ElementTree.parse(tmp_path / "gate.xml").getroot()
    (case,) = suite.findall("testcase")
    assert suite.get("errors") == "1" and suite.get("tests") == "1"
    sentence = result.stderr.strip().removeprefix("error: ").rstrip(".")
    assert sentence in case.find("error").get("message")
    written = step_summary.read_text()
    assert written.startswith("### Determinism gate: ERROR") and sentence in written


@pytest.mark.slow
def test_the_github_workflow_runs_as_written_and_its_gate_passes(tmp_path):
    """Executes .github/workflows/determinism.yml's own `run:` steps, in order, in a scratch copy of the
    repository (as the runner's checkout): the study it runs is the one its baseline was measured from, so the
    gate exits 0 and leaves gate.xml, the step summary and the report."""
    import shutil
    import subprocess
    from xml.etree import ElementTree

    import yaml

    clone = tmp_path / "clone"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    # The installed environment stands in for the job's `make` install step; the copy's packaging files are
    # older than its stamp, so make does not reinstall into it.
    (clone / ".venv").symlink_to(REPO / ".venv")
    for name in ("setup.cfg", "pyproject.toml"):
        os.utime(clone / name, (0, 0))
    workflow = yaml.safe_load((clone / ".github" / "workflows" / "determinism.yml").read_text())
    step_summary = tmp_path / "step_summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(step_summary), "CI": "true"}
    for name in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # a job's shell, not one inside `make test-slow`
        env.pop(name, None)
    exits = {}
    for step in workflow["jobs"]["study"]["steps"]:
        if "run" in step:
            done = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=clone, env=env,
                                  capture_output=True, text=True, timeout=1800)
            exits[step["name"]] = done.returncode
            assert done.returncode == 0, (step["name"], done.stdout[-3000:], done.stderr[-3000:])
    assert len(exits) == 3, exits  # study, gate, report
    paths = {step["with"]["report_paths"] for step in workflow["jobs"]["study"]["steps"]
             if "report_paths" in step.get("with", {})}
    (junit,) = paths
    suite = ElementTree.parse(clone / junit).getroot()
    assert int(suite.get("tests")) > 0 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert step_summary.read_text().startswith("### Determinism gate: PASS")
    uploaded = next(step["with"]["path"] for step in workflow["jobs"]["study"]["steps"]
                    if step.get("uses", "").startswith("actions/upload-artifact"))
    assert {"summary.json", "trials.jsonl", "report.html"} <= {p.name for p in (clone / uploaded).iterdir()}


def _write_text(path, text):
    path.write_text(text)
    return path


def _unusable_inputs(tmp_path, summary):
    other_benchmark = {**copy.deepcopy(summary), "benchmark": "embedding"}
    no_common = copy.deepcopy(summary)
    for row in no_common["conditions"]:
        row["name"] = "env:threads=" + str(len(row["name"]))
    no_common["conditions"] = no_common["conditions"][:1]
    broken = copy.deepcopy(summary)
    del broken["conditions"][0]["n_ok"]
    (tmp_path / "bad.json").write_text('{"schema": "harness.summary/1", ')
    (tmp_path / "rules.json").write_text('{"max_speedup": 2}')
    nan_rules = _write_text(tmp_path / "nan_rules.json", '{"accuracy_tolerance": NaN}')
    infinite = _write_text(tmp_path / "inf.json",
                           json.dumps(summary).replace('"wall_s": ', '"wall_s": Infinity, "x": ', 1))
    return [
        ([f"--candidate={tmp_path / 'missing.json'}"], "missing.json: no such file"),
        ([f"--candidate={tmp_path / 'bad.json'}"], "bad.json is not valid JSON"),
        ([f"--candidate={_write(tmp_path / 'v2.json', {**summary, 'schema': 'harness.summary/2'})}"],
         "has schema 'harness.summary/2'"),
        ([f"--candidate={_write(tmp_path / 'broken.json', broken)}"], "is not a valid harness.summary/1 record"),
        ([f"--candidate={_write(tmp_path / 'other.json', other_benchmark)}"], "cannot be compared"),
        ([f"--candidate={_write(tmp_path / 'nocommon.json', no_common)}"], "share no condition"),
        ([f"--rules={tmp_path / 'rules.json'}"], "unknown thresholds max_speedup"),
        (["--skip=colour"], "unknown rule(s) to skip: colour"),
        # A NaN threshold would pass every comparison; NaN and Infinity are not JSON.
        ([f"--rules={nan_rules}"], "nan_rules.json holds NaN, which is not JSON (RFC 8259)"),
        (["--accuracy_tolerance=nan"], "threshold accuracy_tolerance cannot be nan"),
        ([f"--candidate={infinite}"], "inf.json holds Infinity, which is not JSON (RFC 8259)"),
    ]


@pytest.mark.slow
def test_unusable_input_exits_2_with_one_sentence(small_study, summary, tmp_path):
    for args, message in _unusable_inputs(tmp_path, summary):
        if not any(a.startswith("--candidate") for a in args):
            args = [*args, f"--candidate={small_study / 'summary.json'}"]
        result = run_program("harness.gate", f"--baseline={small_study / 'summary.json'}", *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (message, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_notes_name_conditions_the_candidate_lacks(summary):
    candidate = copy.deepcopy(summary)
    candidate["conditions"] = [row for row in candidate["conditions"] if row["name"] != "bit"]
    notes = gate_rules.check_comparable(summary, candidate, ("b", "c"))
    assert notes == ["not in the candidate, so not compared: bit"]
    assert gate_rules.check_comparable(summary, summary, ("b", "c")) == []


def test_a_candidate_without_control_or_kernels_fails_the_determinism_rule(summary):
    candidate = copy.deepcopy(summary)
    candidate["conditions"] = [row for row in candidate["conditions"] if row["name"] not in ("control", "kernels")]
    for name in ("control", "kernels"):
        verdict = _verdicts(summary, candidate)[("determinism", name)]
        assert verdict.passed is False
        assert verdict.detail == f"the candidate has no {name} condition; run it, or --skip=determinism"
    values = dict(gate_rules.DEFAULT_THRESHOLDS)
    assert all(v.rule != "determinism" for v in gate_rules.evaluate(summary, candidate, values, {"determinism"}))


def test_a_candidate_whose_every_trial_diverged_is_a_regression_not_bad_input(small_study, summary):
    from harness.analysis.summary import summary_from_records
    from harness.studies.records import read_records

    records = read_records(small_study / "trials.jsonl")
    for record in records:
        record["status"] = {"code": "nan_loss", "message": "the training loss became nan at step 1."}
        record["metrics"] = {}
    candidate = summary_from_records(records, directory=small_study)
    # Still an accuracy study: the records' model.task says so, though no trial has an accuracy.
    assert candidate["primary_metric"] == "test_accuracy"
    gate_rules.check_comparable(summary, candidate, ("b", "c"))
    verdicts = _verdicts(summary, candidate)
    assert verdicts[("failures", "control")].passed is False


def test_a_duplicated_record_is_counted_once(small_study):
    from harness.analysis.summary import summary_from_records
    from harness.studies.records import read_records

    records = read_records(small_study / "trials.jsonl")
    once = summary_from_records(records, directory=small_study)
    twice = summary_from_records(records + copy.deepcopy(records), directory=small_study)
    assert [r["n_ok"] for r in twice["conditions"]] == [r["n_ok"] for r in once["conditions"]] == [3] * 5
    assert twice["conditions"][2]["test_accuracy"] == once["conditions"][2]["test_accuracy"]


def test_a_study_without_kernels_passes_against_itself_and_a_dropped_kernels_condition_fails(summary):
    without = copy.deepcopy(summary)
    without["conditions"] = [row for row in without["conditions"] if row["name"] != "kernels"]
    verdicts = _verdicts(without, copy.deepcopy(without))
    assert all(v.passed is not False for v in verdicts.values()), verdicts
    assert ("determinism", "kernels") not in verdicts
    dropped = _verdicts(summary, without)[("determinism", "kernels")]
    assert (dropped.passed, dropped.detail) == (False, "the candidate has no kernels condition; run it, or "
                                                       "--skip=determinism")


def test_the_verdict_line_counts_skipped_checks_and_says_why():
    from harness.analysis.gate_render import verdict_line

    def verdict(rule, passed, detail=""):
        return gate_rules.Verdict(rule, "control", "-", "-", "-", passed, detail)

    checks = [verdict("accuracy", True), verdict("speed", True), verdict("determinism", None, "fewer than 2 ok runs"),
              verdict("variance", None, "fewer than 2 ok runs")]
    assert verdict_line(checks) == ("PASS: 2 passed, 2 skipped; skipped determinism (control): fewer than 2 ok "
                                    "runs; variance (control): fewer than 2 ok runs")
    assert verdict_line([*checks, verdict("speed", False)]).startswith("FAIL: 2 passed, 1 failed, 2 skipped; ")
    slower = gate_rules.Verdict("speed", "control", "0.181 ms", "0.543 ms", "<= 1.25x", False, "3.00x [2.9, 3.1]")
    assert verdict_line([*checks, slower]).startswith(
        "FAIL: 2 passed, 1 failed, 2 skipped; failed speed (control): candidate 0.543 ms against baseline 0.181 ms, "
        "threshold <= 1.25x (3.00x [2.9, 3.1]); skipped determinism (control)")
    assert verdict_line([verdict("accuracy", True)]) == "PASS: 1 passed"


def test_a_studys_records_gated_against_its_own_summary_note_no_config_difference(small_study):
    """summary.json says the --replicas flag and trials.jsonl the groups the trials trained in: that is no
    difference in what was measured, and the gate no longer notes `config differs in replicas (1 -> 5)`."""
    from harness.analysis.summary import load_summary

    own, records = load_summary(small_study / "summary.json"), load_summary(small_study / "trials.jsonl")
    records["config"]["replicas"] = 3  # as a vectorized study's records say
    notes = gate_rules.check_comparable(own, records, ("summary.json", "trials.jsonl"))
    assert not any(note.startswith("config differs") for note in notes), notes



@pytest.mark.slow
def test_both_output_flags_follow_one_rule_and_a_gate_writes_no_record_to_keep(small_study, tmp_path):
    """--junit_xml and --markdown_summary write through a symbolic link (the link stays) and make a missing
    directory; a link loop is one sentence for either; and a failure of the disk does not say "records written
    before this are kept" from a program that writes no records. Then a study directory whose per-example file
    changed is refused (exit 2), its sentence in the JUnit file too."""
    (tmp_path / "gate.xml").write_text("old")
    (tmp_path / "summary.md").write_text("an earlier step's summary\n")
    (tmp_path / "xml_link").symlink_to("gate.xml")
    (tmp_path / "md_link").symlink_to("summary.md")
    study = [f"--baseline={small_study}", f"--candidate={small_study}"]
    linked = run_program("harness.gate", *study, f"--junit_xml={tmp_path / 'xml_link'}",
                         f"--markdown_summary={tmp_path / 'md_link'}")
    assert linked.returncode == 0, linked.stderr
    assert (tmp_path / "xml_link").is_symlink() and (tmp_path / "md_link").is_symlink()
    assert (tmp_path / "gate.xml").read_text().startswith("<?xml")
    assert (tmp_path / "summary.md").read_text().startswith("an earlier step's summary\n### Determinism gate: PASS")
    (tmp_path / "loop").symlink_to("loop")
    looped = run_program("harness.gate", *study, f"--junit_xml={tmp_path / 'new' / 'gate.xml'}",
                         f"--markdown_summary={tmp_path / 'loop'}")
    assert looped.returncode == 2 and looped.stderr.splitlines()[-1] == (
        f"error: --markdown_summary={tmp_path / 'loop'} cannot be written (Too many levels of symbolic links); name "
        "a file.")
    assert not (tmp_path / "new").exists()  # refused before anything is written
    (tmp_path / "a_file").write_text("")
    made = run_program("harness.gate", *study, f"--junit_xml={tmp_path / 'new' / 'gate.xml'}",
                       f"--markdown_summary={tmp_path / 'new' / 'md' / 'summary.md'}")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "new" / "gate.xml").is_file() and (tmp_path / "new" / "md" / "summary.md").is_file()
    report = run_program("harness.report", f"--input_dir={small_study}", f"--output_dir={tmp_path / 'a_file'}")
    assert report.returncode == 2 and report.stderr.splitlines()[-1] == f"error: {tmp_path / 'a_file'}: File exists."

    changed = tmp_path / "study"
    shutil.copytree(small_study, changed)
    sidecar = next((changed / "per_example").iterdir())
    sidecar.write_bytes(sidecar.read_bytes() + b"\0")
    refused = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={changed}",
                          f"--junit_xml={tmp_path / 'refused.xml'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    sentence = refused.stderr.splitlines()[-1]
    assert sentence.startswith(f"error: {sidecar} does not hold what trial ") and sentence.endswith(
        "recorded (its SHA-256 differs): the file was changed or damaged after the trial wrote it.")
    assert sentence.removeprefix("error: ").rstrip(".") in (tmp_path / "refused.xml").read_text()
