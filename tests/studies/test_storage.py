"""Study storage: a study directory behind a gfile URL publishes whole files and resumes."""

import json

import tensorflow as tf

from harness.analysis.summary import load_summary
from harness.studies import conditions, study_runner
from harness.studies.records import read_records
from harness.studies.storage import StudyDir
from harness.trial.config import load_benchmark
from harness.trial.seeds import SeedSet


def test_a_study_in_a_gfile_url_publishes_whole_files_and_resumes(tmp_path):
    # A file:// URL takes the same tf.io.gfile path as gs:// (TF's ram:// filesystem would not do:
    # its writes append to an existing file instead of replacing it, unlike object stores).
    url = f"file://{tmp_path}/remote"
    base, seeds = load_benchmark("digits_mlp", epochs=1, max_train_examples=200), SeedSet.from_base(0)
    specs = study_runner.plan(base, 0, seeds, conditions.parse_conditions("control,init"), 2, "remote")
    remote = StudyDir(url)
    assert remote.remote and remote.local != tmp_path / "remote"
    study_runner.execute(specs[:2], remote.local, after_each=remote.push)
    with tf.io.gfile.GFile(f"{url}/trials.jsonl") as handle:
        pushed = [json.loads(line) for line in handle]
    assert [r["trial_key"] for r in pushed] == [s.key for s in specs[:2]]
    # The per-example files the records name went with them (control's two runs share one).
    assert sorted(tf.io.gfile.listdir(f"{url}/per_example")) == sorted(
        {r["outputs"]["per_example"]["file"].split("/")[1] for r in pushed})
    # A new process (here: a new StudyDir) pulls what the remote holds and runs only the rest.
    again = StudyDir(url)
    assert again.local != remote.local
    assert study_runner.execute(specs, again.local, after_each=again.push) == 2
    assert [r["trial_key"] for r in read_records(tmp_path / "remote" / "trials.jsonl")] == [s.key for s in specs]
    # Pulled and pushed: the remote study and the new mirror both summarize, churn included.
    for directory in (tmp_path / "remote", again.local):
        summary = load_summary(directory / "trials.jsonl")
        assert summary["conditions"][1]["mean_pairwise_disagreement"] > 0
