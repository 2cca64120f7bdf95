"""Per-example predictions beside the records: small records whatever the test set, one file per distinct
content, every read checked against the record's hash, and records from before the sidecar still read."""

import base64
import hashlib
import shutil

import numpy as np
import pytest
from conftest import run_conditions, run_program

from harness.analysis.summary import load_summary, summary_from_records
from harness.errors import UsageError
from harness.studies import per_example
from harness.studies.records import read_records, schema_errors, write_records
from harness.validate import validate_file


@pytest.fixture(scope="module")
def mnist1d_study(tmp_path_factory):
    """The default benchmark's test set (100,000 examples), briefly trained: control and init, twice each."""
    from harness.trial.config import load_benchmark

    directory = tmp_path_factory.mktemp("mnist1d")
    run_conditions(load_benchmark("mnist1d_mlp", epochs=1, max_train_examples=200), "control,init", 2, directory)
    return directory


def test_a_record_stays_small_whatever_the_test_set_and_names_its_predictions_file(mnist1d_study):
    lines = (mnist1d_study / "trials.jsonl").read_bytes().splitlines()
    records = read_records(mnist1d_study / "trials.jsonl")
    assert len(records) == 4 and all(schema_errors(r) == [] for r in records)
    assert {r["metrics"]["test_examples"] for r in records} == {100_000}
    # Inline, 100,000 predictions made a record 150 KB (the default study's 130 records: 20 MB); under 8 KB
    # each, the default study's trials.jsonl stays near 1 MB.
    assert max(len(line) for line in lines) < 8_000
    for record in records:
        reference = record["outputs"]["per_example"]
        data = (mnist1d_study / reference["file"]).read_bytes()
        assert reference["file"] == f"per_example/{reference['sha256']}.npz"
        assert hashlib.sha256(data).hexdigest() == reference["sha256"] and reference["examples"] == 100_000
        with np.load(mnist1d_study / reference["file"]) as arrays:  # as a user reads it
            assert sorted(arrays.files) == ["test_correct", "test_predicted_classes"]
            assert arrays["test_correct"].mean() == record["metrics"]["test_accuracy"]
            assert arrays["test_predicted_classes"].shape == (100_000,)
    # Control's two runs are bit for bit the same: one file holds both their predictions; init's two differ.
    files = {condition: {r["outputs"]["per_example"]["file"] for r in records if r["condition"] == condition}
             for condition in ("control", "init")}
    assert len(files["control"]) == 1 and len(files["init"]) == 2
    assert sorted(path.name for path in (mnist1d_study / "per_example").iterdir()) == sorted(
        name.split("/")[1] for name in files["control"] | files["init"])


def test_records_from_before_the_sidecar_read_as_they_did(small_study):
    """Records with the predictions inline (base64), as the harness wrote them before per_example/, give the
    same churn, unstable examples and distribution SD as the same trials with a sidecar."""
    records = read_records(small_study / "trials.jsonl")
    inline = []
    for record in records:
        arrays = per_example.load(record, small_study)
        outputs = {key: value for key, value in record["outputs"].items() if key != "per_example"}
        outputs["test_predicted_classes_b64"] = base64.b64encode(arrays["test_predicted_classes"].tobytes()).decode()
        outputs["test_correct_b64"] = base64.b64encode(np.packbits(arrays["test_correct"])).decode()
        inline.append({**record, "outputs": outputs})
    assert all(schema_errors(r) == [] for r in inline)
    beside, inside = summary_from_records(records, directory=small_study), summary_from_records(inline)
    keys = ("mean_pairwise_disagreement", "disagreement_ci95", "unstable_examples", "distribution_sd")
    assert [{k: row[k] for k in keys} for row in inside["conditions"]] == \
           [{k: row[k] for k in keys} for row in beside["conditions"]]
    assert beside["conditions"][2]["mean_pairwise_disagreement"] > 0  # init's runs disagree: something compared


def test_a_missing_or_changed_predictions_file_is_one_sentence_not_a_wrong_churn(small_study, tmp_path):
    study = tmp_path / "study"
    shutil.copytree(small_study, study)
    (study / "summary.json").unlink()  # the summary is rebuilt from the records
    trials = study / "trials.jsonl"
    first = read_records(trials)[0]
    path = study / first["outputs"]["per_example"]["file"]
    data = path.read_bytes()

    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(UsageError) as changed:
        load_summary(study)
    assert str(changed.value) == (f"{path} does not hold what trial {first['trial_key']} recorded (its SHA-256 "
                                  "differs): the file was changed or damaged after the trial wrote it")
    path.unlink()
    with pytest.raises(UsageError) as missing:
        load_summary(trials)
    assert str(missing.value) == (f"{path} is missing, and {trials} trial {first['trial_key']} keeps its "
                                  "per-example predictions there: copy a study's per_example/ directory with its "
                                  "trials.jsonl")
    # validate names the line of every record that names the file: every run whose predictions are control's
    # (its three repeats, and kernels' on a CPU) shares it.
    checked, problems = validate_file(trials)
    sharing = [(number, r["trial_key"]) for number, r in enumerate(read_records(trials), start=1)
               if r["outputs"]["per_example"]["file"] == first["outputs"]["per_example"]["file"]]
    assert checked == 15 and len(sharing) >= 3
    assert problems == [f"{trials} line {number}: {str(missing.value).replace(first['trial_key'], key)}"
                        for number, key in sharing]
    result = run_program("harness.validate", str(trials), timeout=60)
    assert result.returncode == 1 and f"{len(sharing)} invalid" in result.stdout.splitlines()[-1]


def test_a_record_cannot_point_its_predictions_outside_the_study(small_study, tmp_path):
    records = read_records(small_study / "trials.jsonl")
    escaping = {**records[0], "outputs": {**records[0]["outputs"], "per_example": {
        "file": "../../etc/passwd", "sha256": "../../etc/passwd", "examples": 1}}}
    assert schema_errors(escaping)  # the schema refuses it, and a read refuses it without opening anything
    with pytest.raises(UsageError, match=r"outputs.per_example.sha256 is not a SHA-256 \(64 hex digits\)$"):
        per_example.load(escaping, small_study)
    write_records(tmp_path / "trials.jsonl", [escaping])
    checked, problems = validate_file(tmp_path / "trials.jsonl")
    assert checked == 1 and problems and all("per_example" in p for p in problems)


def test_the_same_arrays_always_make_the_same_file(tmp_path):
    arrays = {"test_predicted_classes": np.arange(1000, dtype=np.uint8) % 10,
              "test_correct": np.arange(1000) % 3 == 0}
    first = per_example.write(tmp_path / "a", arrays)
    second = per_example.write(tmp_path / "b", {name: arrays[name].copy() for name in reversed(list(arrays))})
    assert first == second and first["examples"] == 1000
    assert (tmp_path / "a" / first["file"]).read_bytes() == (tmp_path / "b" / second["file"]).read_bytes()
    assert per_example.write(tmp_path / "a", {}) is None  # a regression model: no file
