"""How every program of the harness starts and fails: absl flags, one-sentence errors."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from absl import app, flags

from harness.errors import Terminated, UsageError, first_line


def run(main: Callable[[list[str]], int | None], positional_args: bool = False) -> None:
    """`absl.app.run(main)`, with bad input reported as one sentence and exit code 2.

    Programs take only --flags unless `positional_args` (e.g. a list of files).
    """

    def guarded(argv: list[str]) -> int | None:
        if len(argv) > 1 and not positional_args:
            fail(f"unexpected arguments {' '.join(argv[1:])!r}; every option is a --flag.")
        signal.signal(signal.SIGTERM, _terminate)
        try:
            return main(argv)
        except UsageError as error:
            fail(str(error))
        except OSError as error:
            # A full disk, a read-only or vanished directory: the environment, not a bug, so a sentence.
            # Records are appended whole or cut off whole (records.append_record), so none is lost.
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or first_line(error)}; records written before this are kept")
        except KeyboardInterrupt:
            print("interrupted; records written so far are kept.", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            print("terminated (SIGTERM); records written so far are kept.", file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)

    app.run(guarded, flags_parser=_parse_flags)


def _terminate(signum: int, frame: object) -> None:
    del signum, frame
    raise Terminated()


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad flag value as bad input (one sentence, exit 2) rather than absl's exit 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{first_line(error)}; --helpshort lists the flags")
    except UnicodeDecodeError as error:
        # absl reads a --flagfile as text and lets the decoding error out.
        fail(f"a --flagfile is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); a "
             "flagfile holds one --flag=value a line")


def fail(message: str) -> None:
    """Bad input: `error: <message>.` on stderr, and exit 2."""
    message = message if message.endswith(".") else message + "."
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
