"""Where a study's files live: a local directory, or any `tf.io.gfile` URL (gs://, s3://, hdfs://, ram://).

Records are appended with a file lock and fsync, which object stores cannot
do. A remote study therefore works in a local mirror and pushes whole files
after every trial: an object write replaces the object at once, so the remote
copy is always a complete earlier or later version, never a torn one. On
start the mirror pulls what the remote already has, so a remote study resumes.
The per-example files (per_example/, named by their hash, never rewritten) are
pushed once each, before the trials.jsonl that names them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UsageError
from harness.schema import PER_EXAMPLE_DIR, STUDY_FILE, SUMMARY_FILE, TRIALS_FILE
from harness.studies.records import utc_timestamp

MIRRORED_FILES = (TRIALS_FILE, SUMMARY_FILE, STUDY_FILE)
# Held (flock) by the one run writing to a directory; it names that run for a second one.
LOCK_FILE = ".harness.lock"
# Directories this process holds, with how many nested holds: a program that holds its output
# directory can call code that holds it again.
_held: dict[Path, int] = {}


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Holds `directory` for this run: a second run writing there (two benches, two tuners) stops
    with one sentence naming the holder, instead of writing duplicate trials. The lock is an flock,
    which dies with its process: a killed run's lock is taken over by the next run, safely."""
    shown, directory = directory, Path(directory).resolve()  # the message names it as the user did
    if directory in _held:
        _held[directory] += 1
        try:
            yield
        finally:
            _held[directory] -= 1
        return
    fd = _open_lock(directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise UsageError(f"another run is writing to {shown} ({holder}); wait for it to end, or give this run "
                         "another --output_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utc_timestamp()}).encode(),
              0)
    _held[directory] = 1
    try:
        yield
    finally:
        del _held[directory]
        os.close(fd)  # Releases the lock; the file stays (removing it would race a run taking it).


def make_directory(directory: Path) -> None:
    """`directory` and its parents, or one sentence saying why not (a file in the way, no permission)."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is a file; --output_dir names a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the directory {directory}: {error.strerror}") from None


def _open_lock(directory: Path) -> int:
    make_directory(directory)
    try:
        return os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise UsageError(f"cannot write to {directory}: {error.strerror}") from None


def _holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "a run that has not yet said who it is"


def shard_dir_name(shard_index: int, num_shards: int) -> str:
    """Where one shard of a sharded study writes, under the study's directory."""
    return f"shard-{shard_index:05d}-of-{num_shards:05d}"


def is_remote(location: str) -> bool:
    return "://" in location


class StudyDir:
    """A study directory: `local` is always a real directory; `push()` publishes it to a remote location."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")
        self.remote = is_remote(location)
        # The per-example files the remote has (pulled or pushed): content-addressed, so each goes once.
        self._remote_per_example: set[str] = set()
        if self.remote:
            self.local = Path(tempfile.mkdtemp(prefix="harness-study-"))
            self._pull()
        else:
            self.local = Path(location)
        make_directory(self.local)

    def child(self, name: str) -> StudyDir:
        return StudyDir(f"{self.location}/{name}")

    def _pull(self) -> None:
        import tensorflow as tf

        for name in MIRRORED_FILES:
            source = f"{self.location}/{name}"
            if tf.io.gfile.exists(source):
                tf.io.gfile.copy(source, str(self.local / name), overwrite=True)
        for source in tf.io.gfile.glob(f"{self.location}/{PER_EXAMPLE_DIR}/*.npz"):
            name = source.rsplit("/", 1)[-1]
            (self.local / PER_EXAMPLE_DIR).mkdir(exist_ok=True)
            tf.io.gfile.copy(source, str(self.local / PER_EXAMPLE_DIR / name), overwrite=True)
            self._remote_per_example.add(name)

    def push(self, with_curves: bool = False) -> None:
        """Copies the study's files to the remote location (a no-op for local studies)."""
        if not self.remote:
            return
        import tensorflow as tf

        tf.io.gfile.makedirs(self.location)
        # First the files records name, then the records: the remote's trials.jsonl never names a missing file.
        for path in sorted((self.local / PER_EXAMPLE_DIR).glob("*.npz")):
            if path.name not in self._remote_per_example:
                tf.io.gfile.makedirs(f"{self.location}/{PER_EXAMPLE_DIR}")
                tf.io.gfile.copy(str(path), f"{self.location}/{PER_EXAMPLE_DIR}/{path.name}", overwrite=True)
                self._remote_per_example.add(path.name)
        for name in MIRRORED_FILES:
            if (self.local / name).exists():
                tf.io.gfile.copy(str(self.local / name), f"{self.location}/{name}", overwrite=True)
        if with_curves:
            for path in (self.local / "tb").rglob("*"):
                if path.is_file():
                    target = f"{self.location}/{path.relative_to(self.local).as_posix()}"
                    tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
                    tf.io.gfile.copy(str(path), target, overwrite=True)

    def shards(self) -> list[StudyDir]:
        """The shard directories under this study directory, in name (= shard) order."""
        if self.remote:
            import tensorflow as tf

            names = [path.rstrip("/").rsplit("/", 1)[-1] for path in tf.io.gfile.glob(f"{self.location}/shard-*-of-*")]
        else:
            names = [path.name for path in self.local.glob("shard-*-of-*") if path.is_dir()]
        return [self.child(name) for name in sorted(names)]

    def __str__(self) -> str:
        return self.location
