"""The doctor on scripts written the way users write them: each seeding mistake gets its own verdict."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_program

from harness.analysis import script_edits
from harness.studies.records import read_records, schema_errors

DATA = """\
import keras
import numpy as np
import tensorflow as tf

def data():
    rng = np.random.default_rng(0)
    x = rng.random((256, 10)).astype("float32")
    return x, (x.sum(axis=1) > 5).astype("int32")

def model(*middle):
    net = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), *middle,
                            keras.layers.Dense(2)])
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return net
"""

SCRIPTS = {
    # The question's own mistake: TensorFlow's seed only.
    "tf_seed_only": DATA + """
tf.random.set_seed(42)
x, y = data()
model().fit(x, y, epochs=3, batch_size=32, verbose=0)
""",
    # The fix, in a loop over seeds as people measure variance: every fit reproducible.
    "keras_seed": DATA + """
if __name__ == "__main__":
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        x, y = data()
        model(keras.layers.Dropout(0.5)).fit(x, y, epochs=2, batch_size=32, verbose=0)
""",
    # An unseeded permutation before the seeding: the data order differs, in every fit of the loop.
    "permutation": DATA + """
x, y = data()
order = np.random.permutation(len(x))
keras.utils.set_random_seed(42)
for _ in range(2):
    model().fit(x[order], y[order], epochs=3, batch_size=32, shuffle=False, verbose=0)
""",
    # Seeded right, but the order comes from a NumPy Generator made without a seed: no global seed reaches it.
    "generator": DATA + """
keras.utils.set_random_seed(42)
x, y = data()
order = np.random.default_rng().permutation(len(x))
model().fit(x[order], y[order], epochs=3, batch_size=32, shuffle=False, verbose=0)
""",
    # Nothing seeded, and the examples put in order by Python's random.shuffle: two causes, each named.
    "python_shuffle": DATA + """
import random
x, y = data()
order = list(range(len(x)))
random.shuffle(order)
model().fit(x[order], y[order], epochs=3, batch_size=32, shuffle=False, verbose=0)
""",
    # Seeded right, but it reads a metric the fit never logs: it fails after its fit.
    "fails_after_fit": DATA + """
keras.utils.set_random_seed(42)
x, y = data()
history = model().fit(x, y, epochs=3, batch_size=32, verbose=0)
print("final validation loss", history.history["val_loss"][-1])
""",
    # Everything reseeded, but the Dropout layer was made before the seed: its masks differ.
    "dropout": DATA + """
dropout = keras.layers.Dropout(0.5)
keras.utils.set_random_seed(42)
x, y = data()
model(dropout).fit(x, y, epochs=3, batch_size=32, verbose=0)
""",
    # The original question's script: Dropout(0.8), fit's own shuffle, and seeds tried in a loop that reach
    # neither Keras's initializers nor its dropout generators. Three sources, all to be named.
    "unseeded_dropout": DATA + """
import tensorflow as tf
for seed in range(3):
    tf.random.set_seed(seed)
x, y = data()
model(keras.layers.Dropout(0.8)).fit(x, y, epochs=2, batch_size=32, verbose=0)
""",
    # Random data, then an unseeded permutation of it: other values and another order, both named.
    "permuted_random_data": """import keras
import numpy as np

x = np.random.rand(256, 10).astype("float32")
y = (x.sum(axis=1) > 5).astype("int32")
order = np.random.permutation(len(x))
keras.utils.set_random_seed(1)
model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x[order], y[order], epochs=2, batch_size=32, shuffle=False, verbose=0)
""",
    # Seeded right, but a computation that differs from run to run unless op determinism is on: how a
    # nondeterministic GPU kernel looks, made on a CPU (a per-process constant stands in for the kernel's
    # summation order).
    "kernel": DATA + """
import random
from tensorflow.python.framework.config import is_op_determinism_enabled

class Reduction(keras.layers.Layer):
    def call(self, x):
        if is_op_determinism_enabled():
            return x
        return x + random.SystemRandom().random() * 1e-3

keras.utils.set_random_seed(42)
x, y = data()
model(Reduction()).fit(x, y, epochs=3, batch_size=32, verbose=0)
""",
}


def _doctor(tmp_path, name, *flags):
    script = tmp_path / f"{name}.py"
    script.write_text(SCRIPTS[name])
    result = run_program("harness.doctor", f"--output_dir={tmp_path / 'out'}", "--steps=10", *flags, str(script))
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "out" / "doctor.json").read_text())
    assert schema_errors(document) == []
    return result.stdout, document


def test_tf_random_set_seed_alone_gives_other_initial_weights_and_the_fix_is_verified(tmp_path):
    said, document = _doctor(tmp_path, "tf_seed_only", "--verify")
    assert [f["cause"] for f in document["fits"]] == ["init"]
    assert document["seeding"] == [{"call": "tf.random.set_seed", "seed": 42, "line": "tf_seed_only.py:16"}]
    assert ("Before the fit the script made tf.random.set_seed(42) at tf_seed_only.py:16; tf.random.set_seed alone "
            "does not reach Keras 3's initializers") in said
    # After the imports, in the name the script gives Keras; verified in a copy with exactly that text.
    assert document["fix"] == ("before tf_seed_only.py:5, add\n    keras.utils.set_random_seed(0)  # seeds Python's "
                               "random, NumPy, TensorFlow and Keras, before anything random happens")
    assert document["verified"] is True
    fixed = (tmp_path / "out" / "tf_seed_only.fixed.py").read_text().splitlines()
    assert fixed[4].startswith("keras.utils.set_random_seed(0)")
    assert fixed[5:] == SCRIPTS["tf_seed_only"].splitlines()[4:]
    assert ("two runs are bitwise identical over the first 10 steps of each fit.") in said
    # The second run stopped the fit at its first difference, the initial weights: after one step, not 10.
    (first,), (second,) = (read_records(tmp_path / "out" / f"run_{side}.jsonl") for side in "ab")
    assert len(first["steps"]) == 10 and second["stopped"] == "the initial weights" and len(second["steps"]) == 1
    assert "the second run stopped 1 of them at their first difference from the first." in said


@pytest.mark.slow
def test_keras_set_random_seed_is_reproducible_for_every_fit_of_a_loop(tmp_path):
    said, document = _doctor(tmp_path, "keras_seed")
    assert [f["cause"] for f in document["fits"]] == [None, None] and document["reproducible"] is True
    assert "Your script is reproducible here" in said
    assert {c["change"] for c in document["environment"]} == {"oneDNN off", "one thread"}


def _line(name, text):
    """`name.py:N`: the line of the script that holds `text`."""
    return f"{name}.py:{SCRIPTS[name].splitlines().index(text) + 1}"


@pytest.mark.slow
def test_dropout_masks_are_told_apart(tmp_path):
    said, document = _doctor(tmp_path, "dropout")
    assert [f["cause"] for f in document["fits"]] == ["dropout"]
    assert "the SeedGenerator states of dropout#0 are not equal between runs" in said
    assert "keras.utils.set_random_seed(0)" in document["fix"]


@pytest.mark.slow
def test_data_order_names_the_line_that_shuffled_in_every_fit_of_a_loop(tmp_path):
    said, document = _doctor(tmp_path, "permutation")
    assert [f["cause"] for f in document["fits"]] == ["data", "data"]
    permutation = _line("permutation", "order = np.random.permutation(len(x))")
    assert said.count(f"batch 0 holds other examples: the data order differs. The order comes from "
                      f"np.random.permutation at {permutation}, which no seed reached (no seed argument, and no "
                      "seeding call for it before).") == 2
    # Each fit of the second run stopped at its first difference, batch 0.
    assert [fit["stopped"] for fit in read_records(tmp_path / "out" / "run_b.jsonl")] == ["step 0", "step 0"]
    assert "keras.utils.set_random_seed(0)" in document["fix"]


@pytest.mark.slow
def test_another_order_is_named_beside_other_initial_weights(tmp_path):
    said, document = _doctor(tmp_path, "python_shuffle")
    assert [f["causes"] for f in document["fits"]] == [["init", "data"]]
    shuffle = _line("python_shuffle", "random.shuffle(order)")
    assert ("the two runs start from different initial weights (2 of 4 variables differ) and see the examples in "
            "another order (batch 0 holds other examples): the order comes from random.shuffle at "
            f"{shuffle}, which no seed reached") in said
    assert "keras.utils.set_random_seed(0)" in document["fix"]  # seeds Python's random too


def _sources_in_probe_records(directory):
    """What differs between the doctor's own two probe records of a fit, read from their fingerprints: the causes
    a complete verdict names (the second run stops at the first difference, so steps are compared where both
    have them)."""
    (a,), (b,) = (read_records(directory / f"run_{side}.jsonl") for side in "ab")
    steps = min(len(a["steps"]), len(b["steps"]))
    shown = {"init": list(a["initial"].values()) != list(b["initial"].values()),
             "dropout": list(a["seed_generators"].values()) != list(b["seed_generators"].values()),
             "data": any(a["steps"][i]["batch"] != b["steps"][i]["batch"] for i in range(steps))}
    return {cause for cause, differs in shown.items() if differs}


@pytest.mark.slow
def test_every_source_the_probe_records_show_is_named(tmp_path):
    said, document = _doctor(tmp_path, "unseeded_dropout")
    (fit,) = document["fits"]
    assert {"init", "dropout"} <= set(fit["causes"])
    assert set(fit["causes"]) == _sources_in_probe_records(tmp_path / "out")
    assert "draw other dropout masks: the SeedGenerator states of dropout#0 differ" in said
    # The arrays handed to fit are equal in both runs (their fingerprints say so): no "may arrive in another order".
    assert "may arrive in another order" not in said
    # The seeding that decides the state at the fit: the loop's last call, not all three.
    seeding = _line("unseeded_dropout", "    tf.random.set_seed(seed)")
    assert (f"Before the fit the script made tf.random.set_seed(2) at {seeding} (the last of each kind; 2 earlier "
            "seeding calls before them)") in said
    assert "keras.utils.set_random_seed(0)" in document["fix"]


@pytest.mark.slow
def test_an_unseeded_permutation_of_random_data_is_named_beside_the_values(tmp_path):
    said, document = _doctor(tmp_path, "permuted_random_data")
    assert [f["causes"] for f in document["fits"]] == [["data_values"]]
    values, permutation = (_line("permuted_random_data", text) for text in (
        'x = np.random.rand(256, 10).astype("float32")', "order = np.random.permutation(len(x))"))
    assert (f"the arrays handed to fit hold other values in the two runs, drawn by np.random.rand at {values}, which "
            f"no seed reached, and put in another order by np.random.permutation at {permutation}, which no seed "
            "reached.") in said


@pytest.mark.slow
def test_a_script_that_fails_after_its_fit_is_still_diagnosed(tmp_path):
    said, document = _doctor(tmp_path, "fails_after_fit")
    assert [f["cause"] for f in document["fits"]] == [None] and document["reproducible"] is True
    failing = _line("fails_after_fit", 'print("final validation loss", history.history["val_loss"][-1])')
    assert document["script_failed"] == f"after its 1 fit the script failed at {failing} (exit code 1): KeyError: " \
                                        "'val_loss'"
    assert (f"fails_after_fit.py: after its 1 fit the script failed at {failing} (exit code 1): KeyError: 'val_loss'. "
            "The verdicts above are on the fits observed before it.") in said


@pytest.mark.slow
def test_an_unseeded_generator_is_named_in_the_fix_and_the_fix_verified(tmp_path):
    said, document = _doctor(tmp_path, "generator", "--verify")
    generator = _line("generator", "order = np.random.default_rng().permutation(len(x))")
    assert [f["cause"] for f in document["fits"]] == ["data"]
    assert f"The order comes from np.random.default_rng at {generator}, which no seed reached" in said
    assert document["fix"].endswith(f"at {generator}, default_rng(0) in place of default_rng()")
    assert document["verified"] is True


@pytest.mark.slow
def test_a_kernel_verdict_is_confirmed_with_op_determinism(tmp_path):
    said, document = _doctor(tmp_path, "kernel")
    assert [f["cause"] for f in document["fits"]] == ["kernel"] and document["kernel_check"] == "confirmed"
    assert "Confirmed: with op determinism on, two runs are bitwise identical" in said
    assert "\n    tf.config.experimental.enable_op_determinism()  # with the seeding the script has" in document["fix"]


# The Optuna question's examples, as its author wrote them (examples/): random data from an unseeded
# np.random.rand, a create_model(seed) that seeds TensorFlow only, and two fits of one run.
def _example(tmp_path, name, *flags, text=None):
    script = tmp_path / f"{name}.py"
    script.write_text(text or open(f"examples/{name}.py").read())
    result = run_program("harness.doctor", f"--output_dir={tmp_path / 'out'}", "--steps=5", *flags, str(script))
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "out" / "doctor.json").read_text())
    assert schema_errors(document) == []
    return result.stdout, document


def _example_line(name, text):
    return f"{name}.py:{open(f'examples/{name}.py').read().splitlines().index(text) + 1}"


@pytest.mark.slow
def test_random_data_is_named_with_its_lines_beside_the_initial_weights(tmp_path):
    said, document = _example(tmp_path, "seeded_builder_loop")
    x, y = (_example_line("seeded_builder_loop", line) for line in ("X = np.random.rand(100, 10)",
                                                                    "y = np.random.rand(100, 1)"))
    assert [f["causes"] for f in document["fits"]] == [["init", "data_values"]] * 2
    assert said.count(f"start from different initial weights (2 of 4 variables differ) and are given other data: the "
                      f"arrays handed to fit hold other values in the two runs, drawn by np.random.rand at {x}, "
                      f"np.random.rand at {y}, which no seed reached.") == 2
    # The user seeds inside create_model, as the first verdict says: the data values are what is left, not their
    # order (seeding only the data makes the runs bitwise identical).
    followed = open("examples/seeded_builder_loop.py").read().replace("    tf.random.set_seed(seed)",
                                                                      "    keras.utils.set_random_seed(seed)")
    said, document = _example(tmp_path, "seeded_builder_loop", text=followed)
    assert [f["causes"] for f in document["fits"]] == [["data_values"]] * 2
    assert "order" not in said.split("The smallest change")[0] and "shuffle" not in said
    assert f"drawn by np.random.rand at {x}, np.random.rand at {y}, which no seed reached." in said


@pytest.mark.slow
def test_two_fits_of_one_run_differ_by_their_builds_not_by_adam(tmp_path):
    said, document = _example(tmp_path, "two_fits_one_run", "--verify")
    assert document["verified"] is True  # the top-of-script seed makes the two runs alike ...
    (group,) = document["within_run"]
    assert group["cause"] == "init" and group["fits"] == [0, 1]  # ... but not the two fits of one run
    fits = ", ".join(_example_line("two_fits_one_run", f"loss_{n} = {m}.fit(X, y, epochs=10, batch_size=32, "
                                                       "verbose=0).history[\"loss\"][-1]")
                     for n, m in (("a", "first"), ("b", "second")))
    assert (f"Within one run, the 2 models built by create_model(seed=42) and fitted at {fits} differ from each "
            "other: they start from different initial weights: each build draws its weights from the global random "
            "state, which every earlier build (and fit) advanced") in said
    assert "Adam is not a source: with the change above, two runs repeat its every update bit for bit" in said
    builder = _example_line("two_fits_one_run", "    tf.random.set_seed(seed)")
    assert document["builder_fix"] == f"before {builder}, add\n        keras.utils.set_random_seed(seed)"
    assert document["builder_fix_verified"] is True
    assert "the models of one builder are bitwise identical within a run" in said


# The first question's script as users write it: Keras reached through tensorflow.keras imports only, so
# `keras.utils.set_random_seed` would raise NameError there.
NO_KERAS_NAME = """\
import numpy as np
import tensorflow as tf
from tensorflow.keras.layers import Dense, Dropout
from tensorflow.keras.models import Sequential

x = np.random.default_rng(0).random((128, 8)).astype("float32")
y = (x.sum(axis=1) > 4).astype("int32")
model = Sequential([tf.keras.Input((8,)), Dense(16, activation="relu"), Dropout(0.5), Dense(2)])
model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=2, batch_size=32, verbose=0)
"""


@pytest.mark.slow
def test_a_printed_fix_runs_as_printed(tmp_path):
    said, document = _example(tmp_path, "first_question", "--verify", text=NO_KERAS_NAME)
    assert document["fix"] == ("before first_question.py:6, add\n    tf.keras.utils.set_random_seed(0)  # seeds "
                               "Python's random, NumPy, TensorFlow and Keras, before anything random happens")
    assert document["verified"] is True
    # With no name for Keras or TensorFlow at all, the fix imports keras itself, and the fixed copy runs.
    bare = tmp_path / "bare.py"
    bare.write_text(NO_KERAS_NAME.replace("import tensorflow as tf\n", "").replace("tf.keras.Input((8,)), ", "")
                    .replace("tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)",
                             '"sparse_categorical_crossentropy"'))
    edits = script_edits.seeding_at_top(bare)
    assert script_edits.fix_text(edits, "bare.py") == (
        "before bare.py:5, add\n    import keras\n    keras.utils.set_random_seed(0)  # seeds Python's random, NumPy, "
        "TensorFlow and Keras, before anything random happens")
    ran = subprocess.run([sys.executable, str(script_edits.apply(bare, edits, tmp_path / "bare.fixed.py"))],
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr


# Page 1 of the Keras guide, resumable: Dense, Dropout, Adam, fit, with Keras's BackupAndRestore. The Preempted
# callback is the test's own, not the doctor's: INTERRUPT_AT ends the process at the end of that epoch as a
# preemption would, STATE_AT saves the resume-relevant state where that epoch (0-based) begins, for ground truth.
RESUMABLE = """\
import json
import os

import keras
import numpy as np

keras.utils.set_random_seed(0)
x = np.random.rand(256, 8).astype("float32")
y = (x.sum(axis=1) > 4).astype("float32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5),
                          keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")


class Preempted(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == int(os.environ.get("STATE_AT", -1)):
            state = {"dropout": self.model.layers[1].seed_generator.state.numpy().tolist(),
                     "iteration": int(self.model.optimizer.iterations.numpy())}
            with open(os.environ["STATE_OUT"], "w") as file:
                json.dump(state, file)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == int(os.environ.get("INTERRUPT_AT", 0)):
            os._exit(3)


model.fit(x, y, epochs=4, batch_size=32, verbose=0,
          callbacks=[keras.callbacks.BackupAndRestore(os.environ.get("BACKUP_DIR", "backup")), Preempted()])
if "WEIGHTS_OUT" in os.environ:
    np.save(os.environ["WEIGHTS_OUT"], np.concatenate([w.reshape(-1) for w in model.get_weights()]))
"""


def _ground_truth(script, tmp_path, name):
    """The script run whole, then interrupted at the end of epoch 2 and resumed, each in a fresh process as a user
    runs it: (final weights, state where epoch 3 begins) of the whole run and of the resumed one."""
    found = []
    for run, extra in (("whole", {}), ("interrupted", {"INTERRUPT_AT": "2"}), ("resumed", {})):
        env = {**os.environ, "BACKUP_DIR": str(tmp_path / f"{name}_backup"), "STATE_AT": "2",
               "STATE_OUT": str(tmp_path / f"{name}_{run}.json"), "WEIGHTS_OUT": str(tmp_path / f"{name}_{run}.npy"),
               **extra}
        result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == (3 if extra else 0), result.stderr
        if not extra:
            state = json.loads((tmp_path / f"{name}_{run}.json").read_text())
            found.append((np.load(tmp_path / f"{name}_{run}.npy"), state))
    return found


@pytest.mark.slow
def test_a_backup_and_restore_resume_is_judged_against_fresh_process_runs_and_its_fix_too(tmp_path):
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    (whole, whole_state), (resumed, resumed_state) = _ground_truth(script, tmp_path, "original")
    # Ground truth: the resumed run ends elsewhere; where epoch 3 begins its dropout generator is another, the
    # optimizer's iteration count the same (BackupAndRestore saves the optimizer).
    assert not np.array_equal(whole, resumed)
    assert whole_state["dropout"] != resumed_state["dropout"] and whole_state["iteration"] == resumed_state["iteration"]
    result = run_program("harness.doctor", f"--output_dir={tmp_path / 'out'}", "--resume_at=2", "--verify", str(script))
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "out" / "doctor.json").read_text())
    assert schema_errors(document) == []
    found = document["resume"]
    assert (found["replays"], found["resumed_by"]) == (False, "BackupAndRestore")
    assert found["missed"] == ["the random generator state of layer `dropout` (its SeedGenerator: the masks it draws)"]
    assert ("Interrupted at the end of epoch 2 and resumed in a fresh process by the script's BackupAndRestore, the "
            "run does NOT replay the uninterrupted one: its final weights differ; the runs part at step 1 of epoch 3; "
            "where it begins, the resumed run lacks the random generator state of layer `dropout`") in result.stdout
    assert ("at resumable.py:29, ReplayingBackupAndRestore( in place of keras.callbacks.BackupAndRestore("
            in found["fix"])
    assert found["verified"] is True
    # The fix checked as the user would run it: the fixed copy interrupted and resumed ends at the whole run's bits.
    (fixed_whole, _), (fixed_resumed, fixed_state) = _ground_truth(tmp_path / "out" / "resumable.resume_fixed.py",
                                                                   tmp_path, "fixed")
    assert np.array_equal(fixed_whole, whole) and np.array_equal(fixed_resumed, whole)
    assert fixed_state == whole_state


@pytest.mark.slow
def test_resume_at_the_last_epoch_or_later_is_one_sentence(tmp_path):
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    result = run_program("harness.doctor", f"--output_dir={tmp_path / 'out'}", "--resume_at=4", str(script))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: --resume_at=4 is not before the last epoch of the first fit of {script} (at resumable.py:28: 4 "
        "epochs), so there is nothing to resume: give an epoch from 1 to 3.")
