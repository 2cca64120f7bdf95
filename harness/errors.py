"""Errors that mean "the user asked for something we cannot do".

Programs catch `UsageError` at the top and print its message as one sentence
with a non-zero exit, never a traceback. Anything else is a bug or a failed
trial, and is handled where it happens.
"""

import re


class UsageError(Exception):
    """Bad input: an unknown name, an impossible flag combination, a bad file."""


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error message: enough for a sentence, never a traceback."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__


# What TensorFlow and absl print on every start, which says nothing about why a process died.
_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} [\d:.]+ +\d+ "
                      r"(port|cpu_feature_guard|util)\.cc:|I\d{4} [\d:.]+ \d+ \S+\.py:\d+\])")


def meaningful_lines(stderr: str) -> list[str]:
    """The lines of a process's stderr that can say why it failed: not TF's start-up banners, not progress."""
    return [line for line in stderr.splitlines() if line.strip() and not _CHATTER.match(line)]
