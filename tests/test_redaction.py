"""The one redaction (harness/redaction.py): every shape of the corpus is redacted whole, in text, in documents,
in command lines, inside JSON inside JSON; what only looks alike is kept."""

import json

import pytest
from secret_corpus import KEPT, NAMED, SHAPES

from harness.redaction import REDACTED, redact, redact_args, redact_text, secret_name


def test_the_corpus_has_at_least_forty_shapes():
    assert len(SHAPES) + len(NAMED) >= 40


@pytest.mark.parametrize("name,value,parts", SHAPES, ids=[s[0] for s in SHAPES])
def test_every_shape_is_redacted_whole_in_text(name, value, parts):
    for text in (value, f"error: cannot open {value}; try again", json.dumps({"note": value})):
        redacted = redact_text(text)
        assert REDACTED in redacted
        assert [part for part in parts if part in redacted] == [], (name, redacted)


@pytest.mark.parametrize("name,value,parts", SHAPES, ids=[s[0] for s in SHAPES])
def test_every_shape_is_redacted_in_documents_and_json_written_twice(name, value, parts):
    document = {"config": {"model_args": {"note": value, "nested": [value]}}, "error": f"failed: {value}"}
    once = json.dumps(redact(document))
    # A document holding JSON text (a --model_args string) written as JSON again: escaped quotes.
    twice = json.dumps(redact({"flag": json.dumps({"note": value})}))
    for written in (once, twice):
        assert [part for part in parts if part in written] == [], (name, written)


def test_json_stays_valid_and_equal_outside_the_secrets():
    document = {"a": "https://u:p@ss@h/x", "b": ["x", {"token": "t0k3n-value"}], "n": 3, "key_dim": 64, "pin": 1234,
                "trial_key": "0123456789abcdef0123"}
    assert json.loads(redact_text(json.dumps(document))) == redact(document) == {
        "a": "https://u:<redacted>@h/x", "b": ["x", {"token": REDACTED}], "n": 3, "key_dim": 64, "pin": REDACTED,
        "trial_key": "0123456789abcdef0123"}


@pytest.mark.parametrize("name,value", NAMED)
def test_a_secret_name_redacts_any_string_under_it(name, value):
    assert secret_name(name)
    assert redact({name: value}) == {name: REDACTED}
    assert redact_text(f"{name}={value}") == f"{name}={REDACTED}"
    assert redact_args([f"--{name.lower()}", value, f"--{name.lower()}={value}"]) == [
        f"--{name.lower()}", REDACTED, f"--{name.lower()}={REDACTED}"]


@pytest.mark.parametrize("text", KEPT)
def test_what_only_looks_alike_is_kept(text):
    assert redact_text(text) == text
    assert redact({"value": text}) == {"value": text}


def test_names():
    for name in ("password", "db_password", "HARNESS_PWD", "apiKey", "authToken", "--client-secret", "X-Api-Key",
                 "private_key", "passwd", "dbpassword", "credentials", "Authorization", "pass"):
        assert secret_name(name), name
    for name in ("trial_key", "run_key", "KeyError", "passed", "keyword", "monkey", "author", "units",
                 "learning_rate", "bypass_cache", "token_count_warning", "RAY_AUTH_MODE", "token_type",
                 "password_file", "key_path", "PASS"):
        assert not secret_name(name), name


def test_a_command_lines_arguments():
    assert redact_args(["--api_key=AK1", "--url=https://a:PW2@h/", "--password", "hunter3", "--epochs", "3",
                        "data.csv", "-v"]) == [
        "--api_key=<redacted>", "--url=https://a:<redacted>@h/", "--password", REDACTED, "--epochs", "3",
        "data.csv", "-v"]
