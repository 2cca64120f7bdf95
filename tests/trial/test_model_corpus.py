"""Every kind of Keras model a user brings (model_corpus.py) trains exactly as written, or is refused in one
sentence: `control` gives one hash, `init` moves the initial weights, each seed varies what
docs/your-own-model.md says it varies, and the harness's own loop scores what the model's own `fit` scores."""

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.trial.config import user_model_config
from harness.trial.seeds import SeedSet
from harness.trial.train import random_layer_sources_of, run_trial, trainer_of

CORPUS = Path(__file__).with_name("model_corpus.py")
# How far the harness loop's test accuracy may be from the model's own Keras fit on the same seeds and
# batches: 1 point (2 of 200 test examples). On this machine's CPU the two give the same bits.
FIT_TOLERANCE = 0.01
SEEDS, OTHER = SeedSet.from_base(0), SeedSet.from_base(1)

# (model, data, the seeds its randomness follows, the loop that trains it)
TRAINED = [
    ("cnn_batchnorm_noise", "images", {"dropout"}, "harness"),
    ("augmentation_layers", "images", {"augment"}, "harness"),
    ("two_inputs", "image_and_row_means", {"dropout"}, "harness"),
    ("custom_train_step", "images", {"dropout"}, "keras_fit"),
    ("add_loss_regularizer", "images", set(), "harness"),
    ("binary_sigmoid", "images_even_or_odd", set(), "harness"),
    ("embedding_gru", "tokens", {"dropout"}, "harness"),
    ("spatial_and_alpha_dropout", "images", {"dropout"}, "harness"),
    ("two_inputs", "tf_data_dict_features", {"dropout"}, "harness"),
    ("ops_random_in_call", "images", {"dropout"}, "harness"),
    ("unseeded_ops_random_in_call", "images", {"dropout"}, "harness"),
]
ONE_OUTPUT = ("the harness trains and scores a model with one output: it takes inputs as one array, a dict of "
              "arrays by input name, or a tuple or list of arrays by position; labels as one array (a model with "
              "one output).")
REFUSED = [
    ("two_outputs", "images", f"{CORPUS}:two_outputs is compiled with one loss per output; {ONE_OUTPUT}"),
    ("two_outputs", "two_label_sets",
     f"{CORPUS}:two_label_sets: y_train holds several arrays, one per output; {ONE_OUTPUT}"),
]


def corpus_config(model, data, **overrides):
    return user_model_config(model=f"{CORPUS}:{model}", dataset=f"{CORPUS}:{data}", epochs=1, batch_size=32,
                             validation_fraction=0.0, **overrides)


def trained(config, seeds):
    result = run_trial(config, seeds)
    assert result.status["code"] == "ok", result.status
    return result


# The quick tier trains two kinds (the harness's loop and the model's own fit); the full tier every kind.
QUICK = {("two_inputs", "image_and_row_means"), ("custom_train_step", "images")}


@pytest.mark.parametrize(("model", "data", "sources", "trainer"), [
    pytest.param(*kind, id=f"{kind[0]}-{kind[1]}", marks=() if kind[:2] in QUICK else pytest.mark.slow)
    for kind in TRAINED])
def test_each_model_kind_trains_as_written_under_its_seeds(model, data, sources, trainer):
    config = corpus_config(model, data)
    assert set(random_layer_sources_of(config)) == sources
    assert trainer_of(config)[0] == trainer
    first, again = trained(config, SEEDS), trained(config, SEEDS)
    assert first.fingerprints["weights_sha256"] == again.fingerprints["weights_sha256"]
    assert first.fingerprints["predictions_sha256"] == again.fingerprints["predictions_sha256"]
    assert set(first.model["seed_sources"].values()) == sources
    assert first.model.get("trainer", "harness") == trainer
    assert first.model["parameters"] >= first.model["trainable_parameters"]

    moved_init = trained(config, SEEDS.replace(init=OTHER.init))
    assert moved_init.fingerprints["initial_weights_sha256"] != first.fingerprints["initial_weights_sha256"]
    for source in ("dropout", "augment"):
        moved = trained(config, SEEDS.replace(**{source: getattr(OTHER, source)}))
        assert moved.fingerprints["initial_weights_sha256"] == first.fingerprints["initial_weights_sha256"]
        varied = moved.fingerprints["weights_sha256"] != first.fingerprints["weights_sha256"]
        assert varied == (source in sources), f"the {source} seed {'did not vary' if not varied else 'varied'} it"

    own_fit = trained(config.replace(trainer="keras_fit"), SEEDS)
    assert abs(own_fit.metrics["test_accuracy"] - first.metrics["test_accuracy"]) <= FIT_TOLERANCE


@pytest.mark.parametrize(("model", "data", "sentence"), REFUSED, ids=[f"{m}-{d}" for m, d, _ in REFUSED])
def test_a_model_kind_the_harness_cannot_score_is_refused_in_one_sentence(model, data, sentence):
    with pytest.raises(UsageError) as refused:
        run_trial(corpus_config(model, data), SEEDS)
    assert str(refused.value) == sentence


def test_a_model_with_its_own_step_and_dropout_is_refused_order_for_its_step_first():
    config = corpus_config("custom_train_step", "images").replace(reduction_order=1)
    with pytest.raises(UsageError) as refused:
        run_trial(config, SEEDS)
    assert str(refused.value) == (f"the `order` condition permutes each batch inside the harness's step; "
                                  f"{config.model} has its own train_step, which only its own Keras fit runs: "
                                  "leave `order` out for this model")
