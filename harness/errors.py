"""Errors that mean "the user asked for something we cannot do".

Programs catch `UsageError` at the top and print its message as one sentence
with a non-zero exit, never a traceback. Anything else is a bug or a failed
trial, and is handled where it happens.
"""

import re


class UsageError(Exception):
    """Bad input: an unknown name, an impossible flag combination, a bad file."""


class StudyIncomplete(Exception):
    """A study that stopped before all its trials ran, for a cause outside them (its Ray cluster gone): not bad
    input, and no result. Its message is one sentence naming where the trials not run are (lost.jsonl) and the
    command that runs them; programs print it as an error and exit 1."""


class Terminated(BaseException):
    """SIGTERM (`kill`, a scheduler ending a job), raised where the program is, so that it unwinds as after
    Ctrl-C: worker processes are stopped and nothing is written half. A BaseException, like KeyboardInterrupt,
    so no `except Exception` in user code swallows it; not a KeyboardInterrupt, so it is never taken for one
    a user's code raised."""


# Lines that wrap an error rather than say it: Keras's "Exception encountered when calling Dense.call()." and
# its argument list, TF's op-location prefix, terminal colour codes.
_WRAPPER_LINE = re.compile(r"^(Exception encountered when calling .*|Arguments received by .*|• .*)$")
_OP_PREFIX = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# A tensor's values printed over many lines inside a message (Keras's "Invalid input shape for input [[[0.] ...").
_PRINTED_ARRAY = re.compile(r"\[[\[\]\s\d.eE+\-,]*\n[\[\]\s\d.eE+\-,]*\]")


def first_line(error: BaseException | str) -> str:
    """The line of an error message that says what went wrong: enough for a sentence, never a traceback. The
    first non-empty line, past the lines Keras wraps a layer's error in; for an error raised inside a
    tf.function (TF's "in user code:" and the user's traceback), its last line, the error itself."""
    try:
        said = str(error)
    except Exception:  # noqa: BLE001 - a user's exception whose __str__ itself fails still gets a sentence
        said = ""
    text = _PRINTED_ARRAY.sub("(an array)", _COLOUR.sub("", said))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0] == "in user code:":
        lines = [re.sub(r"^\w+(Error|Exception): ", "", lines[-1])]
    lines = [_OP_PREFIX.sub("", line) for line in lines if not _WRAPPER_LINE.match(line)]
    return lines[0].rstrip(".") if lines else type(error).__name__


# What TensorFlow and absl print on every start, which says nothing about why a process died.
_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} [\d:.]+ +\d+ "
                      r"(port|cpu_feature_guard|util)\.cc:|I\d{4} [\d:.]+ \d+ \S+\.py:\d+\])")


def meaningful_lines(stderr: str) -> list[str]:
    """The lines of a process's stderr that can say why it failed: not TF's start-up banners, not progress."""
    return [line for line in stderr.splitlines() if line.strip() and not _CHATTER.match(line)]
