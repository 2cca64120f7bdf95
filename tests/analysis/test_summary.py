"""The summary's statements of power: share intervals, sources that cannot be told apart, shares above 100%."""

import copy
import json

import pytest
from conftest import SMALL

from harness.analysis import summary as summary_lib


def _row(name, sd, n=10, expects_identical=False):
    return {"name": name, "expects_identical_repeats": expects_identical, "n_ok": n,
            "test_accuracy": {"sd": sd, "n": n, "mean": 0.9}, "sd_share_of_all": None, "sd_share_ci95": None}


def _summary(rows):
    summary = {"primary_metric": "test_accuracy", "conditions": rows}
    summary_lib._compare_with_reference_rows(rows, "test_accuracy")  # noqa: SLF001  the shares, as build_summary
    summary["power"] = summary_lib.power(rows, "test_accuracy")
    return summary


def _prepared(rows):
    for row in rows:
        row.update(step_ms=[], seeds_fixed=False, weight_hashes=[], bitwise_reproducible=None, determinism=True,
                   unique_weight_hashes=0, n_failed=0)
    return rows


def test_close_sources_cannot_be_told_apart_and_the_repeats_to_separate_them_are_named():
    rows = _prepared([_row("control", 0.0, expects_identical=True), _row("dropout", 0.0075), _row("init", 0.0068),
                      _row("shuffle", 0.0020), _row("all", 0.01)])
    summary = _summary(rows)
    pairs = {(p["a"], p["b"]): p for p in summary["power"]["ranked_pairs"]}
    assert list(pairs) == [("dropout", "init"), ("init", "shuffle")]
    assert not pairs[("dropout", "init")]["separable"] and pairs[("init", "shuffle")]["separable"]
    assert pairs[("dropout", "init")]["repeats_needed"] > 300
    said = summary_lib.findings(summary)
    power = next(line for line in said if line.startswith("Power: "))
    assert "with 10 repeats an SD is known to within x0.69 to x1.83" in power
    assert "dropout and init cannot be told apart" in power and "repeats each would separate them" in power
    assert "so parts of the ranking of the sources are not significant:" in power  # init > shuffle does hold
    ranking = next(line for line in said if "each source alone gives this share" in line)
    assert "dropout 75% [" in ranking  # every share with its interval


def test_a_share_above_100_percent_comes_with_the_sentence_that_explains_it():
    rows = _prepared([_row("init", 0.012), _row("shuffle", 0.004), _row("all", 0.010)])
    said = summary_lib.findings(_summary(copy.deepcopy(rows)))
    assert any(line.startswith("init's share above 100% is within the noise of 10 repeats") for line in said)
    two = _prepared([_row("init", 0.012), _row("shuffle", 0.011), _row("all", 0.010)])
    said = summary_lib.findings(_summary(two))
    assert [line for line in said if "above 100%" in line] == [  # one sentence for both, not one each
        "init and shuffle's shares above 100% are within the noise of 10 repeats (their intervals reach 60% and 55%): "
        "an SD of few runs is itself uncertain, and `all`'s is no exception."]
    rows[0]["test_accuracy"].update(sd=0.05, n=40)
    rows[2]["test_accuracy"].update(n=40)
    said = summary_lib.findings(_summary(rows))
    assert any(line.startswith("init alone varies test_accuracy more than every seed together") for line in said)


def test_failed_trials_are_counted_with_their_reason(small_study):
    import json

    from harness.analysis.summary import summary_from_records

    records = [json.loads(line) for line in (small_study / "trials.jsonl").read_text().splitlines()]
    for record in records:
        if record["condition"] == "init":
            record["status"] = {"code": "nan_loss", "message": "the training loss became nan at step 7."}
            record["metrics"], record["fingerprints"] = {}, {}
    summary = summary_from_records(records, directory=small_study)
    row = next(r for r in summary["conditions"] if r["name"] == "init")
    assert row["failure_reasons"] == {"nan_loss": "the training loss became nan at step 7."}
    assert "init: 3 of 3 trials failed: nan_loss x3 (the training loss became nan at step 7)." in summary["findings"]


def test_the_noise_floor_is_set_against_every_varied_source_and_churn_shows_what_lies_below_it():
    rows = _prepared([_row("init", 0.004), _row("shuffle", 0.003), _row("bit", 0.0005), _row("all", 0.004)])
    for row in rows:
        row.update(noise_floor=0.0016, mean_pairwise_disagreement=0.2, test_loss=None)
    rows[2]["mean_pairwise_disagreement"] = 0.0222
    floor = [line for line in summary_lib.findings(_summary(copy.deepcopy(rows))) if "noise floor" in line]
    assert floor == ["The test set's noise floor, sqrt(p(1-p)/n), is 0.16 points: bit moves test_accuracy by less "
                     "than drawing another test set would; churn still shows it (bit 2.22%)."]
    floor = [line for line in summary_lib.findings(_summary(rows[:2] + rows[3:])) if "noise floor" in line]
    assert floor == ["The test set's noise floor, sqrt(p(1-p)/n), is 0.16 points: below every varied condition's SD, "
                     "so each spread is more than another test set would give."]


def test_the_bit_flip_sentence_gives_its_churn_or_says_how_to_measure_its_growth():
    def bit_sentence(churn, sd):
        rows = _prepared([_row("bit", sd), _row("all", 0.004)])
        rows[0].update(mean_pairwise_disagreement=churn, test_loss={"sd": 1e-5}, unique_weight_hashes=10)
        return next(line for line in summary_lib.findings(_summary(rows)) if line.startswith("Flipping"))

    assert "10 runs; two runs predict 0.64% of test examples differently (test loss SD 1e-05)." in bit_sentence(
        0.0064, 0.00004)
    unchanged = bit_sentence(0.0, 0.0)
    assert "10 runs; no prediction changed" in unchanged and "harness.diverge --b_flip_bit=N" in unchanged


def test_one_control_run_gives_no_reproducibility_verdict_and_says_so():
    rows = _prepared([_row("control", 0.0, n=1, expects_identical=True)])
    said = summary_lib.findings(_summary(rows))
    assert "One control run finished: whether this configuration is reproducible takes two (--repeats=2 or more)." \
        in said
    assert not any("reproducible here" in line or "NOT bitwise" in line for line in said)


def test_a_real_study_has_its_cost_from_interleaved_blocks_and_distribution_sd_on_every_row(small_study):
    import json

    import numpy as np

    from harness.studies.records import read_records, schema_errors

    summary = json.loads((small_study / "summary.json").read_text())
    assert schema_errors(summary) == []
    rows = {row["name"]: row for row in summary["conditions"]}
    # Each record's per-example file (numpy.load, as a user reads it) holds its accuracy, example by example.
    for record in read_records(small_study / "trials.jsonl"):
        n = record["metrics"]["test_examples"]
        with np.load(small_study / record["outputs"]["per_example"]["file"]) as arrays:
            correct, classes = arrays["test_correct"], arrays["test_predicted_classes"]
        assert correct.dtype == bool and classes.dtype == np.uint8 and correct.shape == classes.shape == (n,)
        assert correct.mean() == record["metrics"]["test_accuracy"]
    for row in rows.values():
        described = row["distribution_sd"]
        assert described["runs"] == 3 and described["ci95"][0] <= described["sd"] <= described["ci95"][1]
    assert rows["control"]["distribution_sd"]["test_set_sd"] == 0  # identical runs: no spread at all
    cost = summary["determinism_cost"]
    # Three units (each a fresh model) of 16 block pairs; the interval is over the units.
    assert cost["units"] == 3 and cost["blocks"] == 48 and cost["ci95"][0] <= cost["ratio"] <= cost["ci95"][1]
    assert "units" in cost["covers"] or "built" in cost["covers"]
    assert set(cost["components"]) == {"op_determinism", "tf_data_determinism"}
    # kernels' step over control's is op determinism off over on: the cost's inverse, from the same blocks.
    kernels = rows["kernels"]["step_time_ratio_vs_control"]
    assert kernels["method"] == "interleaved" and kernels["ratio"] == pytest.approx(1 / cost["ratio"])
    assert kernels["ci95"] == pytest.approx([1 / cost["ci95"][1], 1 / cost["ci95"][0]])
    # Seed conditions' step ratios are of trials timed apart: no interval, marked in the table.
    assert rows["init"]["step_time_ratio_vs_control"]["method"] == "timed apart"
    assert rows["init"]["step_time_ratio_vs_control"]["ci95"] is None
    table = summary_lib.format_summary(summary)
    assert summary_lib.TIMED_APART_NOTE in table and "dist SD [95% CI]" in table
    assert f"~{rows['init']['step_time_ratio_vs_control']['ratio']:.2f}x" in table
    sentence = next(line for line in summary["findings"] if line.startswith("With op determinism off"))
    assert "3 units of 16 interleaved blocks" in sentence and "Deterministic kernels" in sentence
    assert "Op determinism changes the train step's ops" in sentence
    assert "it traces SparseSoftmaxCrossEntropyWithLogits" in sentence
    assert any(line.startswith("The seeds change") and "distribution-wise SD" in line
               for line in summary["findings"])


def _cost_record(unit_blocks):
    """A cost record whose op component's units have these B / A ratios, block by block."""
    units = [{"steps_per_block": 10, "a_seconds": [0.01] * len(ratios), "b_seconds": [0.01 * r for r in ratios]}
             for ratios in unit_blocks]
    return {"study_id": "s", "created_at": "now", "method": "interleaved", "ops_that_pay": None,
            "components": {"op_determinism": {"measured": True, "a": "op determinism off", "b": "op determinism on",
                                              "units": units},
                           "tf_data_determinism": {"measured": False, "a": "off", "b": "on",
                                                   "reason": "no pipeline here."}}}


@pytest.mark.parametrize("units,said", [
    ([[1.0, 1.02], [0.98, 1.01], [1.03, 0.99]], "Deterministic kernels cost no measurable step time here (+0.5%, "
                                                "95% CI [-1.6%, +2.7%], 3 units of 2 interleaved blocks)."),
    ([[2.0, 2.1], [1.9, 2.05], [2.0, 2.0]], "Deterministic kernels cost +100.7% step time (95% CI [+91.4%, "
                                            "+110.5%], 3 units of 2 interleaved blocks)."),
    # Faster with determinism is said only where the whole interval says so...
    ([[0.8, 0.82], [0.79, 0.8], [0.81, 0.8]], "Deterministic kernels made step time shorter here: -19.7% "
                                              "(95% CI [-21.5%, -17.8%], 3 units of 2 interleaved blocks)."),
    # ... and one unit's blocks, however many and however tight, are one sample: issue 43's -18% [-31%, -2%].
    ([[0.8, 0.82, 0.79, 0.8, 0.81, 0.8]], "Deterministic kernels cost -19.7% step time (one unit: one sample, "
                                          "no interval)."),
])
def test_the_cost_sentence_says_no_measurable_cost_where_the_interval_holds_zero(units, said):
    block = summary_lib.cost_block(_cost_record(units))
    sentence = summary_lib._cost_sentences(block)  # noqa: SLF001
    assert said in sentence
    assert "tf.data's deterministic option's cost was not measured: no pipeline here." in sentence


def test_the_terminal_table_fits_the_terminal_by_leaving_out_the_least_needed_columns(small_study):
    summary = json.loads((small_study / "summary.json").read_text())
    whole = summary_lib.format_summary(summary)
    start = len(summary_lib.verdict_lines(summary)) + 2  # the verdict, a blank line and the header come first
    headers = whole.splitlines()[start]
    assert all(name in headers for name in summary_lib.OPTIONAL_COLUMNS) and "left out" not in whole
    for width in (140, 100):
        fitted = summary_lib.format_summary(summary, width=width).splitlines()
        end = next(i for i, line in enumerate(fitted) if line.startswith("(left out"))
        table, note = fitted[start:end], fitted[end]
        assert note.startswith(f"(left out to fit {width} columns: dist SD [95% CI]")
        assert all(len(line) <= width for line in table), (width, max(map(len, table)))
        assert "condition" in table[0] and "churn %" in table[0] and "hashes" in table[0]


def test_an_onednn_row_that_repeats_controls_setting_says_it_compares_control_with_itself(small_study):
    summary = json.loads((small_study / "summary.json").read_text())
    control = next(row for row in summary["conditions"] if row["name"] == "control")
    for setting, name in ((False, "env:onednn=0"), (True, "env:onednn=1")):
        row = {**control, "name": name, "varies": "oneDNN " + name[-1], "matches_control_bitwise": True,
               "metric_delta_vs_control": 0.0}
        said = summary_lib.findings({**summary, "conditions": [*summary["conditions"], row],
                                     "environment": {**summary["environment"], "onednn_enabled": setting}})
        sentence = next(line for line in said if line.startswith(name))
        assert sentence.endswith(f"Control ran with oneDNN {'on' if setting else 'off'} too (TensorFlow's default "
                                 f"on this CPU), so this compares control with itself; env:onednn={int(not setting)} "
                                 "shows what oneDNN changes here."), sentence
        other = summary_lib.findings({**summary, "conditions": [*summary["conditions"], row],
                                      "environment": {**summary["environment"], "onednn_enabled": not setting}})
        assert "compares control with itself" not in next(line for line in other if line.startswith(name))


def test_bitwise_identical_runs_have_exact_zeros_and_no_sentence_on_model_quality(small_study):
    """Issue 43: a control,kernels study of identical runs printed "The seeds change the model's quality ...:
    kernels's test-set SD is 1.24e-14 points" although no seed varies in kernels and every run was the same."""
    from harness.studies.records import read_records

    records = [r for r in read_records(small_study / "trials.jsonl") if r["condition"] in ("control", "kernels")]
    summary = summary_lib.summary_from_records(records, directory=small_study)
    for row in summary["conditions"]:
        assert row["unique_weight_hashes"] == 1  # on a CPU kernels' runs are identical too
        described = row["distribution_sd"]
        assert described["sd"] == described["test_set_sd"] == described["independent_errors_sd"] == 0.0
        assert described["ci95"] == [0.0, 0.0] and row["test_accuracy"]["sd"] == 0.0
        assert row["disagreement_ci95"] is None  # 3 runs: churn has no interval (tests/analysis/test_coverage.py)
    assert not any("quality" in line or "test examples flip" in line for line in summary["findings"])


def test_the_quality_sentence_names_the_source_the_condition_varies():
    rows = _prepared([_row("init", 0.01), _row("control", 0.0, expects_identical=True)])
    for row in rows:
        row["distribution_sd"] = {"sd": 0.004, "ci95": [0.002, 0.007], "test_set_sd": 0.005,
                                  "independent_errors_sd": 0.003, "runs": 10, "examples": 20000}
    rows[0]["unique_weight_hashes"] = 10
    said = summary_lib.findings(_summary(rows))
    assert any(line.startswith("The init seed changes the model's quality") for line in said)
    assert not any(line.startswith("The seeds") for line in said)


@pytest.mark.slow
def test_a_run_trained_with_another_learning_rate_is_named_an_outlier(tmp_path):
    """Eight real init runs, one of them planted with a learning rate 100 times smaller: the summary names that
    run (and only it) in `outliers` and a sentence, and keeps it in every statistic."""
    from harness.studies import conditions, study_runner
    from harness.trial.config import load_benchmark
    from harness.trial.seeds import SeedSet

    # Trained long enough that the init runs agree to a point or two (SMALL's two epochs leave them 45-56%).
    base = load_benchmark("digits_mlp", **{**SMALL, "epochs": 8, "dropout_rate": 0.0, "max_train_examples": 800})
    seeds = SeedSet.from_base(0)
    chosen = conditions.parse_conditions("init")
    specs = study_runner.plan(base, 0, seeds, chosen, 8, "planted")
    planted = study_runner.plan(base.replace(learning_rate=base.learning_rate / 100), 0, seeds, chosen, 8,
                                "planted")[-1]
    specs = [*specs[:-1], planted]
    study_runner.execute(specs, tmp_path)
    records = study_runner.study_records(specs, tmp_path)
    summary = summary_lib.summary_from_records(records, directory=tmp_path)
    row = summary["conditions"][0]
    assert [o["trial_key"] for o in row["outliers"]] == [planted.key]
    assert row["test_accuracy"]["n"] == 8  # named, not dropped
    assert any(line.startswith("Outlier run, kept in every figure above") and planted.key in line
               for line in summary["findings"])


def _shuffle_study(tmp_path, keras_fit=False):
    """A real three-run `shuffle` study on the digits, summarized from its records: the small built-in MLP, or
    conftest's user model trained by its own Keras fit."""
    from conftest import USER_MODEL

    from harness.studies import conditions, study_runner
    from harness.trial.config import load_benchmark, user_model_config
    from harness.trial.seeds import SeedSet

    if keras_fit:
        (tmp_path / "user_model.py").write_text(USER_MODEL)
        base = user_model_config(model=f"{tmp_path / 'user_model.py'}:create_model", dataset="digits",
                                 trainer="keras_fit", epochs=2, max_train_examples=400, model_args={"dropout": 0.0})
    else:
        base = load_benchmark("digits_mlp", **{**SMALL, "augment": False, "dropout_rate": 0.0})
    specs = study_runner.plan(base, 0, SeedSet.from_base(0), conditions.parse_conditions("shuffle"), 3, "orders")
    study_runner.execute(specs, tmp_path)
    summary = summary_lib.summary_from_records(study_runner.study_records(specs, tmp_path), directory=tmp_path)
    return summary, summary["conditions"][0]


def test_keras_fit_shuffled_from_the_epoch_alone_does_not_stop_the_shuffle_condition_varying(tmp_path, monkeypatch):
    """Keras after 3.15.1 seeds fit(shuffle=True) from the epoch number alone (keras-team/keras PR #23046): run
    through Keras's own shuffling, a `shuffle` condition would show SD 0 and read as "order does not matter".
    With every TensorFlow shuffle the Keras adapters call made seed-free (the same permutation every time), a
    study through --trainer=keras_fit still varies the order: the harness hands fit its own batches."""
    import tensorflow as tf

    monkeypatch.setattr(tf.random, "shuffle",
                        lambda value, seed=None, name=None: tf.random.experimental.stateless_shuffle(value, [0, 0]))
    summary, row = _shuffle_study(tmp_path, keras_fit=True)
    records_orders = row["unique_weight_hashes"]
    assert row["varies_nothing"] is None and records_orders == 3 and row["test_loss"]["sd"] > 0
    assert not any("varies nothing" in line for line in summary["findings"])


def test_a_shuffle_seed_that_orders_nothing_is_said_to_vary_nothing(tmp_path, monkeypatch):
    """The same check, planted in the harness's own pipeline: an epoch order that ignores the shuffle seed makes
    every run's batch order equal, and the summary says the condition varies nothing, not that order does not
    matter."""
    from harness.trial import datasets, vectorized

    def epoch_only(n, shuffle_seed, epoch):
        return datasets.tf.random.experimental.stateless_shuffle(datasets.tf.range(n, dtype=datasets.tf.int64),
                                                                 seed=datasets.tf.stack([datasets.tf.constant(
                                                                     0, datasets.tf.int64), epoch]))

    monkeypatch.setattr(datasets, "epoch_order", epoch_only)
    monkeypatch.setattr(vectorized, "epoch_order", epoch_only)
    summary, row = _shuffle_study(tmp_path)
    assert row["varies_nothing"] == "every run saw the training examples in the same order"
    assert row["test_accuracy"]["sd"] == 0.0
    assert "The shuffle condition varies nothing here: every run saw the training examples in the same order, " \
           "so its spread says nothing about shuffle randomness." in summary["findings"]


def _break_study(study, how):
    """Damages a copy of a real study directory as `how` says; the sentence load_summary must refuse it with."""
    from harness.studies.records import read_records

    trials = study / "trials.jsonl"
    lines = trials.read_text().splitlines()
    first = read_records(trials)[0]
    sidecar = study / first["outputs"]["per_example"]["file"]
    if how == "per_example/ missing":
        for path in (study / "per_example").iterdir():
            path.unlink()
        return f"{sidecar} is missing, and {trials} trial {first['trial_key']} keeps its per-example predictions " \
               "there: copy a study's per_example/ directory with its trials.jsonl"
    if how == "a per-example file changed":
        data = sidecar.read_bytes()
        sidecar.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        return f"{sidecar} does not hold what trial {first['trial_key']} recorded (its SHA-256 differs): the file " \
               "was changed or damaged after the trial wrote it"
    if how == "trials.jsonl empty":
        trials.write_text("")
        return f"{trials} holds 0 trial record(s), and {study / 'summary.json'} counts 15 trials: records were " \
               "removed or replaced after the summary was written; run the study's command again to record the " \
               "missing trials"
    if how == "trials.jsonl a symlink loop":
        trials.unlink()
        trials.symlink_to(trials.name)
        return f"cannot read {trials}: Too many levels of symbolic links."
    if how == "a record twice":
        trials.write_text("\n".join([*lines, lines[0]]) + "\n")
        return f"{trials} record 16 repeats trial {first['trial_key']} of record 1 (a duplicate record); keep one " \
               "record per trial (harness.validate lists them)"
    if how == "another study's record":
        other = {**first, "study_id": "0123456789ab", "trial_key": "f" * 20}
        trials.write_text("\n".join([*lines, json.dumps(other)]) + "\n")
        return f"{trials} record 16 is a trial of study 0123456789ab, and {study / 'summary.json'} summarizes study " \
               "smallstudy: one directory holds two studies' records (copied or run into it), which the summary " \
               "does not stand for; keep one study per directory"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["per_example/ missing", "a per-example file changed", "trials.jsonl empty",
                                 "trials.jsonl a symlink loop", "a record twice", "another study's record"])
def test_a_study_directory_is_refused_when_its_records_are_not_what_its_summary_counted(small_study, tmp_path, how):
    """The gate and the report read a directory's summary.json, which stands for the records beside it: the
    summary is refused in one sentence, as validate reports it, when they are not the trials it counted."""
    import shutil

    from harness.errors import UsageError
    from harness.validate import validate_file

    study = tmp_path / "study"
    shutil.copytree(small_study, study)
    summary_lib.load_summary(study)  # the copy as written is read
    sentence = _break_study(study, how)
    with pytest.raises(UsageError) as refused:
        summary_lib.load_summary(study)
    assert str(refused.value) == sentence
    # validate finds the summary invalid with the same sentence.
    summary_path = study / "summary.json"
    assert validate_file(summary_path) == (1, [f"{summary_path}: the gate and the report refuse it: {sentence}"])


def test_validate_finds_a_summary_with_two_rows_of_one_condition_invalid(small_study, tmp_path):
    from harness.validate import validate_file

    summary = json.loads((small_study / "summary.json").read_text())
    summary["conditions"].append(summary["conditions"][0])
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    assert validate_file(path) == (1, [f"{path}: has 2 rows of condition control; a summary has one row per "
                                       "condition (the file was edited or joined)"])


def test_the_verdict_leads_a_real_study_in_five_short_lines(small_study):
    """Issue 45 item 9: the answer first, a line per question, each short enough for a terminal and a phone, every
    figure with its interval; then the table and the findings."""
    summary = json.loads((small_study / "summary.json").read_text())
    rows = {row["name"]: row for row in summary["conditions"]}
    lines = summary_lib.verdict_lines(summary)
    assert len(lines) <= 5 and all(len(line) <= 100 for line in lines), lines
    # On a CPU control's runs are alike, and op determinism off changes the bits (the traced softmax).
    assert rows["kernels"]["matches_control_bitwise"] is False
    assert lines[0] == "Bitwise reproducible here: yes, 3 control runs alike; op determinism off changes the bits."
    sd, (low, high) = rows["all"]["test_accuracy"]["sd"] * 100, rows["all"]["test_accuracy"]["sd_ci95"]
    assert lines[1] == (f"Run to run, test accuracy moves by SD {sd:.2g} points (95% CI [{low * 100:.2g}, "
                        f"{high * 100:.2g}]) with every seed varied.")
    # A flipped bit changes the weights, not one prediction: init alone moves accuracy, so there is no ranking.
    assert summary["power"] is None and rows["bit"]["test_accuracy"]["sd"] == 0
    assert lines[2] == "Sources: of kernels, init and bit, only init moves test accuracy."
    cost = summary["determinism_cost"]["ci95"]
    assert lines[3].startswith("Deterministic kernels cost ") and f"95% CI [{cost[0] - 1:+.1%}, " in lines[3]
    assert len(lines) == 4
    # The terminal prints them first, then a blank line, the header and the table.
    printed = summary_lib.format_summary(summary).splitlines()
    assert printed[:len(lines) + 2] == [*lines, "", "digits_mlp: 3 repeats per condition, study smallstudy"]


def test_the_verdict_says_no_where_control_runs_differ_and_what_one_run_cannot_tell(small_study):
    from harness.studies.records import read_records

    records = read_records(small_study / "trials.jsonl")
    for number, record in enumerate(r for r in records if r["condition"] == "control"):
        record["fingerprints"]["weights_sha256"] = f"{number:064x}"  # as a GPU's unordered sums would leave them
    lines = summary_lib.verdict_lines(summary_lib.summary_from_records(records, directory=small_study))
    assert lines[0] == "Bitwise reproducible here: NO, 3 control runs with equal seeds gave 3 different weights."
    # One repeat of each condition: each line says what it takes, with no figure standing alone.
    once = summary_lib.summary_from_records([r for r in read_records(small_study / "trials.jsonl")
                                             if r["repeat"] == 0], directory=small_study)
    assert summary_lib.verdict_lines(once) == [
        "Bitwise reproducible here: untested, one control run finished (it takes --repeats=2 or more).",
        "Run to run: one run of all finished; how far test accuracy moves takes two (--repeats=2).",
        "Sources: one run each shows no spread to rank (it takes --repeats=2 or more).",
        "Deterministic kernels' cost was not measured (the study has no cost.json; --cost_blocks=0 skips it)."]


def test_the_verdict_names_the_sources_this_many_repeats_cannot_rank_and_how_many_would():
    rows = _prepared([_row("dropout", 0.0075), _row("init", 0.0068), _row("shuffle", 0.0020), _row("all", 0.01)])
    for row in rows:
        row["test_accuracy"]["sd_ci95"] = [0.7 * row["test_accuracy"]["sd"], 1.8 * row["test_accuracy"]["sd"]]
    summary = _summary(rows)
    needed = summary["power"]["ranked_pairs"][0]["repeats_needed"]
    assert summary_lib.verdict_lines(summary)[2:] == [
        "Sources, largest first: dropout, init (not told apart at 10 repeats) > shuffle.",
        f"About {needed} repeats each would tell dropout from init at 80% power."]
