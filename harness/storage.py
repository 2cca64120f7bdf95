"""Where a study's files live: a local directory, or any `tf.io.gfile` URL (gs://, s3://, hdfs://, ram://).

Records are appended with a file lock and fsync, which object stores cannot
do. A remote study therefore works in a local mirror and pushes whole files
after every trial: an object write replaces the object at once, so the remote
copy is always a complete earlier or later version, never a torn one. On
start the mirror pulls what the remote already has, so a remote study resumes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.records import STUDY_FILE, TRIALS_FILE
from harness.summary import SUMMARY_FILE

MIRRORED_FILES = (TRIALS_FILE, SUMMARY_FILE, STUDY_FILE)


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
        if self.remote:
            self.local = Path(tempfile.mkdtemp(prefix="harness-study-"))
            self._pull()
        else:
            self.local = Path(location)
        self.local.mkdir(parents=True, exist_ok=True)

    def child(self, name: str) -> StudyDir:
        return StudyDir(f"{self.location}/{name}")

    def _pull(self) -> None:
        import tensorflow as tf

        for name in MIRRORED_FILES:
            source = f"{self.location}/{name}"
            if tf.io.gfile.exists(source):
                tf.io.gfile.copy(source, str(self.local / name), overwrite=True)

    def push(self, with_curves: bool = False) -> None:
        """Copies the study's files to the remote location (a no-op for local studies)."""
        if not self.remote:
            return
        import tensorflow as tf

        tf.io.gfile.makedirs(self.location)
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
