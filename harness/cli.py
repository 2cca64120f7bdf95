"""How every program of the harness starts and fails: absl flags, one-sentence errors."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app

from harness.errors import UsageError


def run(main: Callable[[list[str]], int | None], positional_args: bool = False) -> None:
    """`absl.app.run(main)`, with bad input reported as one sentence and exit code 2.

    Programs take only --flags unless `positional_args` (e.g. a list of files).
    """

    def guarded(argv: list[str]) -> int | None:
        if len(argv) > 1 and not positional_args:
            _fail(f"unexpected arguments {' '.join(argv[1:])!r}; every option is a --flag.")
        try:
            return main(argv)
        except UsageError as error:
            _fail(str(error))
        except KeyboardInterrupt:
            print("interrupted; records written so far are kept.", file=sys.stderr)
            sys.exit(130)

    app.run(guarded)


def _fail(message: str) -> None:
    message = message if message.endswith(".") else message + "."
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
