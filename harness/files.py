"""Whole files, written so that a reader or a kill never sees half of one: the one atomic writer that
records, summaries, reports, the gate's files and cached data sets share. Text goes through the one
redaction (harness/redaction.py) on its way: whatever a report or a JUnit file quotes, no secret is written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.errors import UsageError
from harness.redaction import redact_text
from harness.schema import RECORD_FILES


def _umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_atomically(path: Path, data: str | bytes) -> None:
    """Writes a whole file: temporary file, fsync, rename. Readers see the old file or the new one, never
    half; on an error (a full disk) the old file stays whole, the temporary one goes, and the OSError names
    `path`. Text (not bytes) is written with its secrets redacted."""
    if isinstance(data, str):
        data = redact_text(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None
    try:
        # mkstemp makes the file 0600; results are shared like any file written here, so honour the umask.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:  # e.g. a full disk: the old file stays whole, the temporary one goes
        Path(tmp).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: Path, flag: str) -> Path:
    """A file a flag names for output beside the records (gate's --junit_xml, --markdown_summary, --write_rules),
    checked, and the path to write: one rule for every such flag. A regular or new file, whose directory is made
    (as CI report directories are); a symbolic link is written through (the file it names is written, the link
    stays), a link loop or a path through a file refused. Never a record file, by its name or its link's target's
    (writing there would replace a study's records), nor a device or pipe (an atomic replace would swap a device
    such as /dev/full for a file). One sentence otherwise."""
    try:
        path.stat()
    except FileNotFoundError:
        pass  # a new file, or a link to one: written where the link points
    except OSError as error:  # a link loop, a path through a file
        raise UsageError(f"--{flag}={path} cannot be written ({error.strerror}); name a file") from None
    target = Path(os.path.realpath(path))
    for name in (path.name, target.name):
        if name in RECORD_FILES:
            raise UsageError(f"--{flag}={path} names a file of a study's records ({name}); name another file")
    if target.exists() and not target.is_file():
        raise UsageError(f"--{flag}={path} is not a regular file (a directory, device or pipe); name a file")
    return target
