"""Your model's code: a function that does not give a Keras model gets one sentence naming it."""

import pytest

from harness.errors import UsageError
from harness.trial.config import user_model_config
from harness.trial.seeds import SeedSet
from harness.trial.train import run_trial


@pytest.mark.parametrize("function,message", [
    ("missing.py:create_model", "no such file {dir}/missing.py (the model spec)."),
    ("model.py:nope", "{dir}/model.py has no function 'nope' (the model spec '{dir}/model.py:nope')."),
    ("model.py:CONSTANT", "{dir}/model.py:CONSTANT is not callable; the model spec must name a function."),
    ("model.py:broken", "{dir}/model.py:broken raised RuntimeError: boom."),
    ("model.py:not_a_model", "{dir}/model.py:not_a_model returned dict, not a Keras model."),
    ("model.py:uncompiled", "{dir}/model.py:uncompiled returned a model that is not compiled; compile it in the "
                            "function or pass --loss (e.g. sparse_categorical_crossentropy or mse) and --optimizer."),
])
def test_a_bad_model_gets_one_sentence_naming_it(user_files, function, message):
    config = user_model_config(model=f"{user_files}/{function}", dataset=f"npz:{user_files}/data.npz", epochs=1)
    with pytest.raises(UsageError) as raised:
        run_trial(config, SeedSet.from_base(0))
    assert str(raised.value) == message.format(dir=user_files)


def test_an_error_that_cannot_say_what_it_is_still_gets_a_sentence(user_files):
    (user_files / "odd.py").write_text(
        "class Odd(Exception):\n    def __str__(self):\n        raise RuntimeError('str fails')\n\n\n"
        "def create_model():\n    raise Odd()\n")
    config = user_model_config(model=f"{user_files}/odd.py:create_model", dataset=f"npz:{user_files}/data.npz",
                               epochs=1)
    with pytest.raises(UsageError) as raised:
        run_trial(config, SeedSet.from_base(0))
    assert str(raised.value) == f"{user_files}/odd.py:create_model raised Odd: Odd."


# Model code that leaves the process instead of returning or raising an error: at build time and, in its own
# train step, while it trains.
LEAVING = """\
import os
import signal
import sys
import time

import keras


def exits():
    sys.exit(5)


def hard_exit():
    os._exit(9)


def interrupts():
    raise KeyboardInterrupt


def ctrl_c():
    # What a real Ctrl-C does: SIGINT to this process while the model function runs.
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(10)


class LeavesWhileTraining(keras.Model):
    def __init__(self, leave):
        super().__init__()
        self.flatten, self.head, self.leave = keras.layers.Flatten(), keras.layers.Dense(10), leave

    def call(self, x, training=False):
        return self.head(self.flatten(x))

    def train_step(self, data):
        self.leave()
        return {}


def model_leaving_while_training(leave):
    model = LeavesWhileTraining({"sys.exit": lambda: sys.exit(5), "os._exit": lambda: os._exit(9),
                                 "KeyboardInterrupt": interrupts}[leave])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model
"""


@pytest.mark.parametrize("function,message", [
    ("exits", "{spec} called sys.exit(5) while building the model."),
    ("hard_exit", "{spec} called os._exit(9) while building the model."),
    ("interrupts", "{spec} raised KeyboardInterrupt while building the model."),
])
def test_model_code_that_leaves_the_process_while_building_is_one_sentence(user_files, function, message):
    (user_files / "leaving.py").write_text(LEAVING)
    spec = f"{user_files}/leaving.py:{function}"
    config = user_model_config(model=spec, dataset=f"npz:{user_files}/data.npz", epochs=1)
    with pytest.raises(UsageError) as raised:
        run_trial(config, SeedSet.from_base(0))
    assert str(raised.value) == message.format(spec=spec)


@pytest.mark.parametrize("leave,how", [
    ("sys.exit", "called sys.exit(5)"), ("os._exit", "called os._exit(9)"),
    ("KeyboardInterrupt", "raised KeyboardInterrupt"),
])
def test_model_code_that_leaves_the_process_while_training_fails_its_trial(user_files, leave, how):
    (user_files / "leaving.py").write_text(LEAVING)
    spec = f"{user_files}/leaving.py:model_leaving_while_training"
    config = user_model_config(model=spec, model_args={"leave": leave}, dataset=f"npz:{user_files}/data.npz",
                               epochs=1)
    result = run_trial(config, SeedSet.from_base(0))
    assert result.status == {"code": "error", "message": f"{spec} {how} while training."}


def test_a_real_ctrl_c_in_model_code_still_interrupts(user_files):
    """A KeyboardInterrupt the model's code raises is its failure; one from a real Ctrl-C (SIGINT while the
    code runs) stops the program as Ctrl-C always does (cli.run: exit 130)."""
    (user_files / "leaving.py").write_text(LEAVING)
    config = user_model_config(model=f"{user_files}/leaving.py:ctrl_c", dataset=f"npz:{user_files}/data.npz",
                               epochs=1)
    with pytest.raises(KeyboardInterrupt):
        run_trial(config, SeedSet.from_base(0))
    with pytest.raises(UsageError, match="raised KeyboardInterrupt while building the model"):
        run_trial(config.replace(model=f"{user_files}/leaving.py:interrupts"), SeedSet.from_base(0))
