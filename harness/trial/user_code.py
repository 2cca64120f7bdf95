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

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UsageError, first_line

# In-process objects by spec: functions and data handed to the Python API.
_REGISTERED: dict[str, Any] = {}
IN_PROCESS_PREFIXES = ("python:", "arrays:")


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
    """Calls user code; whatever it raises becomes one sentence naming the spec."""
    try:
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
