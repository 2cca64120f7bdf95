"""Errors that mean "the user asked for something we cannot do".

Programs catch `UsageError` at the top and print its message as one sentence
with a non-zero exit, never a traceback. Anything else is a bug or a failed
trial, and is handled where it happens.
"""


class UsageError(Exception):
    """Bad input: an unknown name, an impossible flag combination, a bad file."""


def first_line(error: BaseException | str) -> str:
    """The first non-empty line of an error message: enough for a sentence, never a traceback."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__
