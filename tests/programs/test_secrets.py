"""No secret is written or printed, whatever path it takes in: every program that writes (bench, its shards and
merge, report, gate with JUnit and Markdown, tune, reeval, compare_configs, doctor) runs with the corpus's
secrets (tests/secret_corpus.py) planted in environment variables, --model_args, --data_dir, storage URLs and a
script's arguments; every file the runs write, and all they print, holds none of them."""

import json

import pytest
from conftest import run_program
from secret_corpus import NAMED, SHAPES, fragments

MODEL = """\
import keras


def create_model(units=8, **ignored):  # the planted secrets arrive here, and are not used
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(units, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""

SCRIPT = """\
import sys

import keras
import numpy as np

keras.utils.set_random_seed(1)
x = np.random.default_rng(0).random((64, 4)).astype("float32")
y = (x.sum(axis=1) > 2).astype("int32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=1, batch_size=16, verbose=0)
print("script ran with", len(sys.argv) - 1, "arguments")
"""


@pytest.mark.slow
def test_no_program_writes_or_prints_a_planted_secret(user_files):
    root = user_files
    (root / "model.py").write_text(MODEL)
    (root / "script.py").write_text(SCRIPT)
    inputs = {path.resolve() for path in root.rglob("*") if path.is_file()}
    env = {**{f"HARNESS_PLANTED_{i:02d}": value for i, (_, value, _) in enumerate(SHAPES)}, **dict(NAMED)}
    model_args = json.dumps({"units": 8, **{f"note{i:02d}": value for i, (_, value, _) in enumerate(SHAPES)},
                             **{name.lower(): value for name, value in NAMED}})
    trial = [f"--model={root}/model.py:create_model", f"--data=npz:{root}/data.npz", f"--model_args={model_args}",
             "--data_dir=https://du:pwDataDir60x@tfds.example/tfds", "--epochs=1"]
    storage = "postgresql://pgu:pwStorage61x@127.0.0.1:1/db"
    runs = {
        "bench": ("harness.bench", *trial, "--conditions=control,kernels", "--repeats=2", "--cost_blocks=0",
                  f"--output_dir={root}/study"),
        "report": ("harness.report", f"--input_dir={root}/study"),
        "gate": ("harness.gate", f"--baseline={root}/study", f"--candidate={root}/study",
                 f"--junit_xml={root}/ci/junit.xml", f"--markdown_summary={root}/ci/gate.md"),
        **{f"shard{i}": ("harness.bench", *trial, "--conditions=control", "--repeats=2", "--cost_blocks=0",
                         "--num_shards=2", f"--shard_index={i}", f"--output_dir={root}/sharded") for i in (0, 1)},
        "merge": ("harness.merge", f"--input_dir={root}/sharded"),
        "compare_configs": ("harness.compare_configs", *trial, "--config=A:epochs=1", "--config=B:epochs=2",
                            "--seeds=2", f"--output_dir={root}/compare"),
        "tune": ("harness.tune", *trial, "--n_trials=2", "--seeds_per_trial=2", "--space=units=4..16",
                 f"--output_dir={root}/tune"),
        "reeval": ("harness.reeval", f"--optuna_storage=sqlite:///{root}/tune/optuna.db", "--seeds=2",
                   f"--output_dir={root}/reeval"),
        "reeval_storage_error": ("harness.reeval", f"--optuna_storage={storage}"),
        "tune_storage_error": ("harness.tune", *trial, f"--storage={storage}", f"--output_dir={root}/tune2"),
        "doctor": ("harness.doctor", "--steps=2", f"--output_dir={root}/doctor", str(root / "script.py"),
                   "--api_key=pwDoctorKey62x", "--url=https://a:pwDoctorUrl63x@h.example/", "--password",
                   "pwDoctorPass64x", *(value for _, value, _ in SHAPES[:8])),
    }
    printed, exits = [], {}
    for name, (program, *args) in runs.items():
        result = run_program(program, *args, env_vars=env, timeout=600)
        exits[name] = result.returncode
        printed.append((name, result.stdout + result.stderr))
    # Each ran as a user's would: the storage URLs that reach no database fail with a sentence, the rest work.
    assert exits == {**{name: 0 for name in runs}, "reeval_storage_error": 2, "tune_storage_error": 2}, printed
    written = [path for path in root.rglob("*") if path.is_file() and path.resolve() not in inputs]
    assert {"trials.jsonl", "summary.json", "study.json", "report.html", "report.md", "junit.xml", "gate.md",
            "optuna.db", "doctor.json", "compare.json"} <= {path.name for path in written}
    secrets = fragments() + ["pwDataDir60x", "pwStorage61x", "pwDoctorKey62x", "pwDoctorUrl63x", "pwDoctorPass64x"]
    found = [(str(path.relative_to(root)), secret) for path in written for secret in secrets
             if secret.encode() in path.read_bytes()]
    found += [(name, secret) for name, text in printed for secret in secrets if secret in text]
    assert found == []
    # What is said instead: the values' shapes are kept, the secrets read <redacted>.
    record = json.loads((root / "study" / "trials.jsonl").read_text().splitlines()[0])
    assert record["config"]["data_dir"] == "https://du:<redacted>@tfds.example/tfds"
    assert record["config"]["model_args"]["harness_api_key"] == "<redacted>"
    assert record["environment"]["env_vars"]["HARNESS_PLANTED_00"] == "redis://:<redacted>@cache.example:6379/0"
    doctor = json.loads((root / "doctor" / "doctor.json").read_text())
    assert doctor["args"][:4] == ["--api_key=<redacted>", "--url=https://a:<redacted>@h.example/", "--password",
                                  "<redacted>"]
    assert "postgresql://pgu:<redacted>@127.0.0.1:1/db" in dict(printed)["reeval_storage_error"]
