"""`harness.validate` names bad records by line; `harness.report` renders real plots from a real study."""

import html as html_lib
import json
import os
import shutil

import pytest
from browser import WIDTH, chromium_path, open_page
from conftest import run_program
from PIL import Image

from harness.analysis.study_report import build_report


def test_validate_passes_a_real_study(small_study):
    result = run_program("harness.validate", str(small_study / "trials.jsonl"), str(small_study / "summary.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 record(s) in 2 files: all valid" in result.stdout


def test_validate_flags_a_corrupted_record_with_its_line_number(small_study, tmp_path):
    lines = (small_study / "trials.jsonl").read_text().splitlines()
    damaged = json.loads(lines[3])
    damaged["fingerprints"]["weights_sha256"] = "zz"
    lines[3] = json.dumps(damaged)
    lines[6] = lines[6][: len(lines[6]) // 2]  # a line cut in half, then more lines after it
    path = tmp_path / "trials.jsonl"
    path.write_text("\n".join(lines) + "\n" + '{"schema": "harness.trial/1", "torn')
    result = run_program("harness.validate", str(path))
    assert result.returncode == 1
    assert f"{path} line 4: fingerprints/weights_sha256" in result.stdout
    assert f"{path} line 7: is not valid JSON" in result.stdout
    assert "the last line is torn" in result.stdout
    assert "15 record(s) in 1 file: 2 invalid" in result.stdout


def test_validate_rejects_numbers_json_does_not_have(small_study, tmp_path):
    from harness.validate import validate_file

    first = (small_study / "trials.jsonl").read_text().splitlines()[0]
    for token in ("NaN", "-Infinity", "1e999"):
        path = tmp_path / "trials.jsonl"
        path.write_text(first + "\n" + first.replace('"test_loss": ', f'"test_loss": {token}, "was": ', 1) + "\n")
        assert validate_file(path) == (2, [f"{path} line 2: holds {token}, which is not JSON (RFC 8259)"])
        summary = tmp_path / "summary.json"
        summary.write_text((small_study / "summary.json").read_text().replace('"wall_s": ', f'"wall_s": {token}, '
                                                                              '"was": ', 1))
        assert validate_file(summary) == (1, [f"{summary}: holds {token}, which is not JSON (RFC 8259)"])


def test_validate_and_the_gate_find_a_trial_recorded_twice(small_study, tmp_path):
    from harness.validate import validate_file

    lines = (small_study / "trials.jsonl").read_text().splitlines()
    copy = json.loads(lines[1])
    copy["trial_key"] = "f" * 20  # the same trial under a new key
    path = tmp_path / "trials.jsonl"
    path.write_text("\n".join([*lines, lines[0], json.dumps(copy)]) + "\n")
    first = json.loads(lines[1])
    assert validate_file(path) == (len(lines) + 2, [
        f"{path} line {len(lines) + 1}: repeats trial {json.loads(lines[0])['trial_key']} of line 1 (a duplicate "
        "record)",
        f"{path} line {len(lines) + 2}: is trial {first['condition']} repeat {first['repeat']} of line 2 again, under "
        "another key (a copy, or the trial run twice another way): a summary would count it twice"])
    result = run_program("harness.gate", f"--baseline={small_study}", f"--candidate={path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: {path} record {len(lines) + 1} repeats trial {json.loads(lines[0])['trial_key']} of record 1 (a "
        "duplicate record); keep one record per trial (harness.validate lists them).")
    summary = json.loads((small_study / "summary.json").read_text())
    summary["conditions"].append(summary["conditions"][0])
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    from harness.analysis.summary import load_summary
    from harness.errors import UsageError

    with pytest.raises(UsageError) as raised:
        load_summary(tmp_path / "summary.json")
    assert str(raised.value) == (f"{tmp_path / 'summary.json'} has 2 rows of condition control; a summary has one "
                                 "row per condition (the file was edited or joined)")


def test_validate_on_a_missing_file_exits_2_with_one_sentence(tmp_path):
    result = run_program("harness.validate", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2 and "nope.jsonl: no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_renders_real_pngs_referenced_by_the_html(small_study, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(small_study, study)
    written = build_report(study, study)
    pngs = [p for p in written if p.suffix == ".png"]
    assert {p.name for p in pngs} == {"accuracy.png", "sd_by_source.png", "churn.png", "unstable_examples.png",
                                      "step_time.png", "loss_curves.png"}
    html = (study / "report.html").read_text()
    markdown = (study / "report.md").read_text()
    for png in pngs:
        with Image.open(png) as image:
            image.verify()  # a complete, valid PNG
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 300 and image.height > 200
            # Not a blank canvas: a real plot has many colours.
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 50
        assert f'src="{png.name}"' in html and f"]({png.name})" in markdown
    assert "bitwise-identical" in html and "TensorFlow" in html
    # The table is an HTML table that wraps to the page, not a preformatted block that scrolls sideways;
    # each finding appears once.
    assert '<table class="conditions">' in html and "<pre>" not in html and "churn % [95% CI]" in html
    summary = json.loads((study / "summary.json").read_text())
    assert all(html.count(html_lib.escape(finding)) == 1 for finding in summary["findings"])
    assert "Every trial finished." in html and "## Failed trials" in markdown
    # The price of determinism: each component's ratio with its interval, and the ops that pay (none on a CPU).
    cost = summary["determinism_cost"]
    assert "<h2>The price of determinism</h2>" in html and "## The price of determinism" in markdown
    ci = cost["components"]["op_determinism"]["ci95"]
    assert f"| op determinism | op determinism off | op determinism on | {cost['ratio']:.3f}x | " \
           f"[{ci[0]:.3f}, {ci[1]:.3f}] | 48 |" in markdown
    assert "<td>SparseSoftmaxCrossEntropyWithLogits</td><td>traced only with op determinism off" in html
    assert "dist SD [95% CI]" in html


def test_the_report_in_a_real_browser_fits_1280_pixels_and_every_plot_loads(small_study, tmp_path):
    if not chromium_path():
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            pytest.fail("no chromium on PATH, and HARNESS_REQUIRE_BROWSER=1 asks for the browser test.")
        pytest.skip("no chromium on PATH (.ci/run installs Debian's chromium package).")
    study = tmp_path / "study"
    shutil.copytree(small_study, study)
    build_report(study, study)
    with open_page(study / "report.html") as page:
        layout = page.evaluate("""() => {
            const table = document.querySelector('table.conditions');
            // A cell whose text the browser laid out on more than one line (outside the words of `varies`).
            const broken = [...table.querySelectorAll('tr')].slice(1).flatMap(tr => [...tr.cells])
                .filter(td => td.cellIndex !== 1).filter(td => {
                    const range = document.createRange(); range.selectNodeContents(td);
                    return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1;
                }).map(td => td.textContent);
            return {page: document.documentElement.scrollWidth, view: window.innerWidth,
                    table: table.scrollWidth, box: table.parentElement.clientWidth, broken: broken,
                    images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])};
        }""")
    assert layout["view"] == WIDTH
    assert layout["page"] <= layout["view"] and layout["table"] <= layout["box"], layout  # no horizontal scroll
    assert layout["broken"] == [], layout  # no number split across lines to make the table fit
    assert len(layout["images"]) == 6 and all(width > 300 for _, width in layout["images"]), layout["images"]


def test_a_study_whose_trials_all_failed_lists_each_failure_with_its_reason(small_study, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    records = [json.loads(line) for line in (small_study / "trials.jsonl").read_text().splitlines()]
    for record in records:
        record["status"] = {"code": "nan_loss", "message": f"the training loss became nan at step {record['repeat']}."}
        record["metrics"], record["fingerprints"] = {}, {}
    (study / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    build_report(study, study)
    html = (study / "report.html").read_text()
    assert html.count("<td>nan_loss</td>") == len(records)
    assert "the training loss became nan at step 2." in html


def test_a_noise_floor_far_beyond_the_bars_does_not_squash_them():
    from harness.analysis.study_report import _sd_bars

    rows = [{"name": name, "determinism": True, "test_accuracy": {"sd": sd, "sd_ci95": [sd * 0.7, sd * 1.8]},
             "sd_share_of_all": None, "noise_floor": floor}
            for name, sd, floor in (("init", 0.004, 0.05), ("all", 0.006, 0.05))]
    figure = _sd_bars({"primary_metric": "test_accuracy", "conditions": rows})
    left, right = figure.axes[0].get_xlim()
    assert left == 0 and right < 2.0  # the 5-point floor is a label; the bars (to 1.08 points) fill the axis
    assert any("noise floor" in text.get_text() and "off this scale" in text.get_text()
               for text in figure.axes[0].texts)


def test_report_program_and_its_bad_input(small_study, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(small_study, study)
    result = run_program("harness.report", f"--input_dir={study}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "accuracy.png").exists()
    missing = run_program("harness.report", f"--input_dir={tmp_path / 'nothing'}")
    assert missing.returncode == 2 and "no such study directory" in missing.stderr
    assert "Traceback" not in missing.stderr
