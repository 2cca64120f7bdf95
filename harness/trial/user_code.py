"""A user's own code, named by a spec: `path/to/file.py:function` or `package.module:function`.

One place turns a spec into the function it names, with one sentence for each
way that can fail (no such file or module, importing it raised, no such
function, not callable), and says what the code is: the SHA-256 of its source
file, so a study can tell when the code under it changed.

Functions handed over in Python (`harness.study(model=create_model, ...)`) and
arrays handed over as such are registered here under a spec of their own
(`python:...`, `arrays:...`): they resolve in this process only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import UsageError, first_line

# In-process objects by spec: functions and data handed to the Python API.
_REGISTERED: dict[str, Any] = {}
IN_PROCESS_PREFIXES = ("python:", "arrays:")
# What the harness is doing with the code a spec names (`call`'s `what`), in sentences about it.
DOING = {"model": "while building the model", "data": "while loading the data"}


def is_in_process(spec: str) -> bool:
    """Whether the spec names an object handed over in Python, which another process cannot see."""
    return spec.startswith(IN_PROCESS_PREFIXES)


def register_function(function: Callable[..., Any]) -> str:
    """A spec for a function handed over in Python.

    A function importable from a module file gets that module's spec, so worker
    processes can import it too; one defined in a script or notebook (`__main__`)
    is known to this process only.
    """
    if not callable(function):
        raise UsageError(f"model= must be a function returning a Keras model, got {type(function).__name__}.")
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", None)
    if module and name and module != "__main__" and "<" not in name:
        try:
            if _attribute(importlib.import_module(module), name) is function:
                return f"{module}:{name}"
        except Exception:  # Not importable as such: keep it in this process.
            pass
    spec = f"python:{module or 'object'}.{name or type(function).__name__}"
    _REGISTERED[spec] = function
    return spec


def register_object(prefix: str, name: str, value: Any) -> str:
    spec = f"{prefix}{name}"
    _REGISTERED[spec] = value
    return spec


def registered(spec: str) -> Any:
    if spec not in _REGISTERED:
        raise UsageError(f"{spec} was handed over in another Python process; in a fresh process name it as "
                         "path/to/file.py:function (data: npz:PATH).")
    return _REGISTERED[spec]


def resolve_function(spec: str, what: str) -> Callable[..., Any]:
    """The function a spec names; `what` says in errors what it is for (e.g. "model")."""
    if spec.startswith("python:"):
        return registered(spec)
    where, colon, name = spec.rpartition(":")
    if not colon or not where or not name:
        raise UsageError(f"cannot read the {what} spec {spec!r}; write path/to/file.py:function or "
                         "package.module:function.")
    module = _load_module(where, what)
    try:
        function = _attribute(module, name)
    except AttributeError:
        raise UsageError(f"{where} has no function {name!r} (the {what} spec {spec!r}).") from None
    if not callable(function):
        raise UsageError(f"{where}:{name} is not callable; the {what} spec must name a function.")
    return function


def source_sha256(spec: str) -> str | None:
    """SHA-256 of the source file a spec's code lives in (of the function's source for in-process
    functions); None when there is no source to read."""
    if spec.startswith("arrays:"):
        return None
    if spec.startswith("python:"):
        function = registered(spec)
        try:
            text = inspect.getsource(function)
        except (OSError, TypeError):
            code = getattr(function, "__code__", None)
            return hashlib.sha256(code.co_code).hexdigest() if code else None
        return hashlib.sha256(text.encode()).hexdigest()
    where = spec.rpartition(":")[0]
    path = _file_of(where)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path and path.is_file() else None


def call(function: Callable[..., Any], spec: str, what: str, **kwargs: Any) -> Any:
    """Calls user code; whatever it raises becomes one sentence naming the spec, and so does leaving the
    process (`guarded`)."""
    try:
        with guarded(spec, DOING.get(what, f"while running the {what} function")):
            return function(**kwargs)
    except UsageError:
        raise
    except TypeError as error:
        if _is_signature_error(function, kwargs):
            raise UsageError(f"{spec} cannot be called with {_describe_kwargs(kwargs)}: {first_line(error)} "
                             f"(give its arguments with --{what}_args).") from None
        raise UsageError(f"{spec} raised TypeError: {first_line(error)}.") from None
    except Exception as error:
        raise UsageError(f"{spec} raised {type(error).__name__}: {first_line(error)}.") from None


class _ProcessExit(BaseException):
    """What os._exit(code) raises while user code runs under `guarded`. A BaseException, as os._exit cannot be
    caught: no `except Exception` in the user's code swallows it."""

    def __init__(self, code: Any) -> None:
        super().__init__(code)
        self.code = code


@contextlib.contextmanager
def guarded(who: str, doing: str, failure: Callable[[str], Exception] = UsageError) -> Iterator[None]:
    """Runs user code (with the harness code that calls into it: Keras, tf.function tracing) so that code which
    would leave the process is one sentence, `failure("<who> called sys.exit(5) <doing>")`, and the program
    goes on as for any other error of that code: sys.exit (SystemExit), os._exit, and a KeyboardInterrupt the
    code raises itself. A real Ctrl-C stays a KeyboardInterrupt, which stops the program (exit 130).

    os._exit would end the process on the spot, with no record and no sentence; it is replaced, while the code
    runs, by one that raises. Only in this thread of this process: a process the code forks (multiprocessing)
    and threads it starts still exit as they asked.

    Ctrl-C and a KeyboardInterrupt raised by the code are told apart by a SIGINT handler installed for the
    while, which notes the signal and then does what the handler before it does (Python's raises
    KeyboardInterrupt). Where SIGINT has no Python handler (ignored, or the system's default, which ends the
    process), no Ctrl-C raises KeyboardInterrupt, so the code raised it. Outside the main thread no handler can
    be installed: every KeyboardInterrupt is taken for a real Ctrl-C, so a real one is never swallowed."""
    real_exit, pid, thread = os._exit, os.getpid(), threading.get_ident()

    def exit_here(code: Any) -> None:
        if os.getpid() != pid or threading.get_ident() != thread:
            real_exit(code)
        raise _ProcessExit(code)

    signalled: list[int] = []
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
    if callable(previous):
        signal.signal(signal.SIGINT, _noting(previous, signalled))
    os._exit = exit_here
    try:
        yield
    except SystemExit as error:
        raise failure(f"{who} called sys.exit({_exit_code(error.code)}) {doing}.") from None
    except _ProcessExit as error:
        raise failure(f"{who} called os._exit({_exit_code(error.code)}) {doing}.") from None
    except KeyboardInterrupt:
        if signalled or not in_main_thread:
            raise
        raise failure(f"{who} raised KeyboardInterrupt {doing}.") from None
    finally:
        os._exit = real_exit
        if callable(previous):
            signal.signal(signal.SIGINT, previous)


def _noting(handler: Callable[[int, Any], Any], signalled: list[int]) -> Callable[[int, Any], Any]:
    """A signal handler that notes the signal in `signalled`, then calls `handler`."""

    def noting(signum: int, frame: Any) -> Any:
        signalled.append(signum)
        return handler(signum, frame)

    return noting


def _exit_code(code: Any) -> str:
    """An exit code as the call wrote it: sys.exit(5), sys.exit(), sys.exit('done')."""
    return "" if code is None else repr(code)


def _is_signature_error(function: Callable[..., Any], kwargs: dict[str, Any]) -> bool:
    try:
        inspect.signature(function).bind(**kwargs)
    except TypeError:
        return True
    except ValueError:  # No signature to check (a builtin): not ours to judge.
        return False
    return False


def _describe_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "no arguments"


def accepts_argument(function: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _attribute(module: Any, dotted: str) -> Any:
    value = module
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _file_of(where: str) -> Path | None:
    if where.endswith(".py"):
        return Path(where)
    found = importlib.util.find_spec(where) if _importable_name(where) else None
    return Path(found.origin) if found and found.origin and found.origin != "built-in" else None


def _importable_name(where: str) -> bool:
    return all(part.isidentifier() for part in where.split("."))


def _load_module(where: str, what: str) -> Any:
    """A module from a file path (`x/y.py`) or an importable name (`pkg.mod`)."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"no such file {where} (the {what} spec).")
        # One module per file and content: a changed file in a long-lived process is loaded anew.
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        module_name = f"harness_user_{path.stem}_{digest}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        # Lets the file import its neighbours, as it could when run as a script.
        sys.path.insert(0, str(path.resolve().parent))
        try:
            sys.modules[module_name] = module
            with guarded(where, "as it was imported"):
                module_spec.loader.exec_module(module)
        except UsageError:  # the harness's own refusal while importing (a study run at import): already a sentence
            sys.modules.pop(module_name, None)
            raise
        except Exception as error:
            sys.modules.pop(module_name, None)
            raise UsageError(f"importing {where} raised {type(error).__name__}: {first_line(error)}.") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    if not _importable_name(where):
        raise UsageError(f"no such file {where} (the {what} spec); a file name ends in .py.")
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as error:
        if error.name and where.startswith(error.name):
            raise UsageError(f"no module named {where} (the {what} spec); is it installed, or on PYTHONPATH?") \
                from None
        raise UsageError(f"importing {where} raised ModuleNotFoundError: {first_line(error)}.") from None
    except Exception as error:
        raise UsageError(f"importing {where} raised {type(error).__name__}: {first_line(error)}.") from None
