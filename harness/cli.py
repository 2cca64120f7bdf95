"""How every program of the harness starts and fails: absl flags, one-sentence errors, and its --help."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import stat
import sys
import threading
import types
from collections.abc import Callable

from absl import app, flags

from harness.errors import StudyIncomplete, Terminated, UsageError, first_line
from harness.redaction import RedactingStream, redact_text


def run(main: Callable[[list[str]], int | None], positional_args: bool = False, *,
        writes_records: bool = False) -> None:
    """`absl.app.run(main)`, with bad input reported as one sentence and exit code 2, and --help listing the
    flags the program reads (`help_text`) on stdout with exit 0.

    Programs take only --flags unless `positional_args` (e.g. a list of files). A program that appends records
    (`writes_records`) ends a failure of its disk, a Ctrl-C or a SIGTERM by saying the records written before it
    are kept; the others (gate, report, validate, ...) have none to speak of and end the sentence there.
    """
    kept = "; records written before this are kept" if writes_records else ""
    so_far = "; records written so far are kept" if writes_records else ""

    def guarded(argv: list[str]) -> int | None:
        redact_output()
        if len(argv) > 1 and not positional_args:
            fail(f"unexpected arguments {' '.join(argv[1:])!r}; every option is a --flag.")
        signal.signal(signal.SIGTERM, _terminate)
        sys.unraisablehook = _terminating_again(sys.unraisablehook)
        try:
            return main(argv)
        except UsageError as error:
            fail(str(error))
        except StudyIncomplete as error:  # no result, but not bad input: the same command completes it
            fail(str(error), exit_code=1)
        except OSError as error:
            # A full disk, a read-only or vanished directory: the environment, not a bug, so a sentence.
            # Records are appended whole or cut off whole (records.append_record), so none is lost.
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or first_line(error)}{kept}")
        except KeyboardInterrupt:
            print(f"interrupted{so_far}.", file=sys.stderr)
            sys.exit(130)
        except Terminated:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ending now: another SIGTERM changes nothing
            print(f"terminated (SIGTERM){so_far}.", file=sys.stderr)
            _end_now(128 + signal.SIGTERM)

    define_help_flags(sys.modules[main.__module__])
    app.run(guarded, flags_parser=_parse_flags)


def redact_output() -> None:
    """Puts RedactingStream over sys.stdout and sys.stderr (once), and points absl's log handler at the new
    stderr (it keeps the stream it was made with)."""
    from absl import logging

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
    handler = logging.get_absl_handler().python_handler
    if not isinstance(handler.stream, RedactingStream):
        handler.stream = sys.stderr


class _HelpFlag(flags.BooleanFlag):
    """A help flag that prints on stdout and exits 0 (absl's exit 1, a failure to a script or CI step that only
    asked for help): `help_text`, or with `full` absl's list of every flag defined in the process."""

    def __init__(self, name: str, short_name: str | None, text: str, program: types.ModuleType, full: bool = False):
        super().__init__(name, False, text, short_name=short_name, allow_hide_cpp=True, allow_override=True)
        self.program, self.full = program, full

    def parse(self, argument: str) -> None:
        super().parse(argument)
        if not self.value:
            return
        try:
            if self.full:
                app.usage(writeto_stdout=True)
            else:
                print(help_text(self.program))
            sys.stdout.flush()
        except BrokenPipeError:  # `--help | head`: what was read is enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


def define_help_flags(program: types.ModuleType) -> None:
    """--help (-?), -h and --helpshort: `help_text(program)`; --helpfull: every flag. In place of absl's, which
    are defined first (app.run would define them again over these otherwise) and replaced."""
    app.define_help_flags()
    for name, short_name, text, full in (
            ("help", "?", "The flags this program reads, grouped, and exit.", False),
            ("helpshort", "h", "The same as --help.", False),
            ("helpfull", None, "Every flag defined in this process, absl's own too, and exit.", True)):
        flags.DEFINE_flag(_HelpFlag(name, short_name, text, program, full))


# The flags users type most, listed first by the --help of every program that reads them, in this order: what a
# study is of, how many trials, where its records go or come from, what is compared.
MAIN_FLAGS = ("benchmark", "model", "data", "conditions", "repeats", "epochs", "seed", "output_dir", "input_dir",
              "baseline", "candidate", "config", "optuna_storage", "objective", "n_trials", "seeds_per_trial",
              "space", "metric")


def help_text(program: types.ModuleType) -> str:
    """What --help prints: the program's docstring, then the flags it reads, grouped by the module that defines
    them: its own, then the shared ones it declares with `flags.declare_key_flag` (absl's key flags of the
    program), e.g. harness.trial_flags' for a program that runs trials, after the main flags (MAIN_FLAGS) the program
    reads. Then the flags every program takes."""
    spec = getattr(program, "__spec__", None)
    name = spec.name if program.__name__ == "__main__" and spec else program.__name__
    # absl files the flags of the module run as __main__ under sys.argv[0] (FlagValues.main_module_help).
    registered = sys.argv[0] if program.__name__ == "__main__" else program.__name__
    groups: dict[str, list[flags.Flag]] = {registered: []}
    for flag in flags.FLAGS.get_key_flags_for_module(registered):
        groups.setdefault(flags.FLAGS.find_module_defining_flag(flag.name), []).append(flag)
    sections = [(program.__doc__ or f"python -m {name} [flags]").strip(), "Flags (--helpfull lists every flag):"]
    # What users type most comes first, in MAIN_FLAGS' order; the rest stays in its group.
    main = sorted((flag for members in groups.values() for flag in members if flag.name in MAIN_FLAGS),
                  key=lambda flag: MAIN_FLAGS.index(flag.name))
    if main:
        sections.append("\n".join(["the main flags:", *(_flag_entry(flag) for flag in main)]))
    groups = {module: [flag for flag in members if flag.name not in MAIN_FLAGS] for module, members in groups.items()}
    for module, members in groups.items():
        if members:
            title = name if module == registered else _group_title(module)
            sections.append("\n".join([f"{title}:", *(_flag_entry(flag) for flag in sorted(
                members, key=lambda flag: flag.name))]))
    sections.append("\n".join([
        "every program:",
        _entry("--flagfile", "Read more flags from this file, one --flag=value a line."),
        _entry("-v,--verbosity", "absl's log level (1: debug); given at all, it also keeps TensorFlow's C++ "
               "start-up notices (oneDNN, CPU features), which are otherwise left out."),
        _entry("-h,--help,--helpshort", "These flags, and exit."),
        _entry("--helpfull", "Every flag defined in this process, absl's own too, and exit.")]))
    return "\n\n".join(sections)


def _group_title(module: str) -> str:
    """A shared flag module's group: what its flags are for (its HELP_TITLE), and where they are defined."""
    title = getattr(sys.modules.get(module), "HELP_TITLE", None)
    return f"{title} ({module})" if title else module


def _flag_entry(flag: flags.Flag) -> str:
    """One flag as absl's own help shows it."""
    names = (f"-{flag.short_name}," if flag.short_name else "") + f"--{'[no]' * flag.boolean}{flag.name}"
    return _entry(names, flag.help or "", flag.default_as_str and f"default: {flag.default_as_str}",
                  flag.parser.syntactic_help)


def _entry(names: str, text: str, *notes: str | None) -> str:
    return "\n".join([flags.text_wrap(f"{names}: {text}", indent="    ", firstline_indent="  "),
                      *(flags.text_wrap(f"({note})", indent="    ") for note in notes if note)])


def _terminate(signum: int, frame: object) -> None:
    del signum, frame
    raise Terminated()


# How long after a SIGTERM Python dropped (`_terminating_again`) it is delivered again: long enough for the
# finalizer that dropped it, and the hook, to have returned.
_AGAIN_AFTER_S = 0.01


def _terminating_again(hook: Callable[[object], None]) -> Callable[[object], None]:
    """A sys.unraisablehook that delivers SIGTERM again when Python dropped the Terminated it raised: raised
    where Python ignores exceptions ("Exception ignored in ..."), in a finalizer the garbage collector was
    running (TensorFlow's ConcreteFunctionGarbageCollector.__del__ under reeval), the run would go on to its end.
    Delivered from a thread, a moment later: a handler run inside this hook would be dropped too. Every other
    unraisable exception goes to `hook`."""

    def unraisable(argument: object) -> None:
        if isinstance(getattr(argument, "exc_value", None), Terminated):
            # To the main thread, whose sleep or wait it interrupts (ignored once the program is ending).
            again = threading.Timer(_AGAIN_AFTER_S, signal.pthread_kill,
                                    args=(threading.main_thread().ident, signal.SIGTERM))
            again.daemon = True
            again.start()
            return
        hook(argument)

    return unraisable


def _end_now(code: int) -> None:
    """Ends the process with `code` once the program has unwound (its records closed, its workers stopped, its
    directory released): the atexit handlers run (Ray's shutdown, logging's last flush) and the output is
    flushed, but the interpreter's teardown is skipped: freeing TensorFlow's objects took 2 to 5 s after a
    reeval's sentence (measured on 2 cores), time in which a scheduler's SIGKILL may follow its SIGTERM."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader gone (a closed pipe): nothing more to say
            stream.flush()
    os._exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad flag value as bad input (one sentence, exit 2) rather than absl's exit 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(f"{first_line(error)}; --helpshort lists the flags")
    except UsageError as error:  # a --flagfile that is not a file (_flag_file_lines)
        fail(str(error))
    except UnicodeDecodeError as error:
        # absl reads a --flagfile as text and lets the decoding error out.
        fail(f"a --flagfile is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); a "
             "flagfile holds one --flag=value a line")


_absl_flag_file_lines = flags.FlagValues._get_flag_file_lines


def _flag_file_lines(self: flags.FlagValues, filename: str, parsed_file_stack: list | None = None) -> list[str]:
    """absl's reading of a --flagfile (given on the command line or inside another flagfile), refusing what is not
    a regular file before absl reads it whole: /dev/zero would fill memory, a fifo block for ever."""
    try:
        regular = stat.S_ISREG(os.stat(filename).st_mode) if filename else True
    except OSError:
        regular = True  # absl says it cannot open it
    if not regular:
        raise UsageError(f"--flagfile={filename} is not a regular file (a directory, device or pipe); a flagfile "
                         "holds one --flag=value a line")
    return _absl_flag_file_lines(self, filename, parsed_file_stack)


flags.FlagValues._get_flag_file_lines = _flag_file_lines


def fail(message: str, exit_code: int = 2) -> None:
    """Bad input: `error: <message>.` on stderr, secrets redacted (a URL's password in a flag it quotes), and exit 2
    (or `exit_code`)."""
    message = redact_text(message if message.endswith(".") else message + ".")
    print(f"error: {message}", file=sys.stderr)
    sys.exit(exit_code)
