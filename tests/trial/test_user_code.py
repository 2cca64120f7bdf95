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
