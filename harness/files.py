"""Whole files, written so that a reader or a kill never sees half of one: the one atomic writer that
records, summaries and cached data sets share."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.errors import UsageError
from harness.schema import RECORD_FILES


def _umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_atomically(path: Path, data: str | bytes) -> None:
    """Writes a whole file: temporary file, fsync, rename. Readers see the old file or the new one, never
    half; on an error (a full disk) the old file stays whole, the temporary one goes, and the OSError names
    `path`."""
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


def check_output_file(path: Path, flag: str) -> None:
    """A file a flag names for output beside the records (gate's --junit_xml, --markdown_summary): a regular or
    new file (its directory is made, as CI report directories are), never a record file (writing there would
    replace a study's records) nor a device or pipe (an atomic replace would swap a device such as /dev/full
    for a file). One sentence otherwise."""
    if path.name in RECORD_FILES:
        raise UsageError(f"--{flag}={path} names a file of a study's records ({path.name}); name another file")
    if path.exists() and not path.is_file():
        raise UsageError(f"--{flag}={path} is not a regular file (a directory, device or pipe); name a file")
