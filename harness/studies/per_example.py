"""A trial's per-example outputs (each test example's predicted class, and whether it was right) in a file
beside `trials.jsonl`, named and hashed from the trial's record.

They are what the disagreement between runs and the real share of accuracy's spread are read from, but they
are one value per test example: inline as base64 they made the default study's `trials.jsonl` 20 MB
(150 KB a record). Each trial's arrays go to `per_example/<sha256>.npz` in the study directory instead,
named by the SHA-256 of the file's bytes; the record's `outputs.per_example` holds that name, the hash and
the number of examples.

- The file is written whole (temporary file, fsync, rename) before its record is appended, so a record
  never names a file that is not there. A kill in between leaves a file no record names, which nothing
  reads.
- The same arrays always give the same bytes (the zip's times are fixed), so trials that agree bit for
  bit share one file.
- Every read checks the hash: a changed or missing file is one sentence, never a silently wrong
  disagreement.
- Records from before the sidecar hold the arrays inline (`test_predicted_classes_b64`,
  `test_correct_b64`); `load` reads them too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError
from harness.files import replace_atomically
from harness.schema import CORRECT_ARRAY, PER_EXAMPLE_DIR, PREDICTED_CLASSES_ARRAY, TRIALS_FILE

# The arrays a sidecar may hold.
ARRAYS = (PREDICTED_CLASSES_ARRAY, CORRECT_ARRAY)
# Any date in the zip makes equal arrays equal bytes; this is the zip format's earliest.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """`arrays` as an .npz file (np.load reads it), compressed, the same bytes for the same arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    return buffer.getvalue()


def write(directory: Path, arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Writes `arrays` to the study directory's sidecar file for them; the reference a record holds
    (`outputs.per_example`), or None when there is nothing to write (a regression model, a failed trial)."""
    if not arrays:
        return None
    data = npz_bytes(arrays)
    digest = hashlib.sha256(data).hexdigest()
    path = directory / file_name(digest)
    # Equal bytes, equal name: a trial that agreed bit for bit with an earlier one finds its file written. A
    # file there that does not hold them (damaged) is written again.
    if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest):
        replace_atomically(path, data)
    return {"file": file_name(digest), "sha256": digest, "examples": len(next(iter(arrays.values())))}


def file_name(digest: str) -> str:
    """Where the sidecar of this SHA-256 lives, relative to the study directory."""
    return f"{PER_EXAMPLE_DIR}/{digest}.npz"


def load(record: dict[str, Any], directory: Path | None) -> dict[str, np.ndarray] | None:
    """A trial record's per-example arrays (`ARRAYS`; test_correct as 0/1 uint8), from its sidecar in
    `directory` (the directory of its trials.jsonl) or, in records from before the sidecar, inline; None
    when the record has none. One sentence when its file is missing or does not hold what was recorded."""
    outputs = record.get("outputs") or {}
    reference = outputs.get("per_example")
    if reference is None:
        return _inline(outputs, (record.get("metrics") or {}).get("test_examples"))
    data = verified_bytes(record, directory)
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if CORRECT_ARRAY in arrays:
        arrays[CORRECT_ARRAY] = arrays[CORRECT_ARRAY].astype(np.uint8)
    return arrays


def verified_bytes(record: dict[str, Any], directory: Path | None) -> bytes:
    """The bytes of a record's sidecar file, checked against the hash the record holds; one sentence when the
    file is missing or differs."""
    reference = record["outputs"]["per_example"]
    trial = f"trial {record.get('trial_key')}"
    if directory is None:
        raise UsageError(f"{trial} keeps its per-example predictions in {reference['file']} beside its "
                         f"{TRIALS_FILE}; read the records from their study directory")
    if not re.fullmatch("[0-9a-f]{64}", str(reference.get("sha256"))):  # a path is made of it: no ../
        raise UsageError(f"{trial}'s outputs.per_example.sha256 is not a SHA-256 (64 hex digits)")
    path = directory / file_name(reference["sha256"])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path} is missing, and {directory / TRIALS_FILE} {trial} keeps its per-example "
                         f"predictions there: copy a study's {PER_EXAMPLE_DIR}/ directory with its "
                         f"{TRIALS_FILE}") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != reference["sha256"]:
        raise UsageError(f"{path} does not hold what {trial} recorded (its SHA-256 differs): the file was "
                         "changed or damaged after the trial wrote it")
    return data


def problems(records: list[tuple[int, dict[str, Any]]], directory: Path) -> list[tuple[int, str]]:
    """(line number, sentence) for each record whose sidecar is missing, damaged or not the arrays it says:
    what `harness.validate` reports."""
    found = []
    for number, record in records:
        if (record.get("outputs") or {}).get("per_example") is None:
            continue
        try:
            arrays = load(record, directory)
        except UsageError as error:
            found.append((number, str(error)))
            continue
        except (ValueError, OSError, zipfile.BadZipFile) as error:  # the right hash, but not an npz of arrays
            found.append((number, f"{record['outputs']['per_example']['file']} is not an .npz of arrays ({error})"))
            continue
        expected = record["outputs"]["per_example"]["examples"]
        wrong = sorted(name for name, array in (arrays or {}).items()
                       if name not in ARRAYS or array.shape != (expected,))
        if wrong:
            found.append((number, f"{record['outputs']['per_example']['file']} holds {wrong[0]}, which is not one "
                                  f"of {', '.join(ARRAYS)} with {expected} examples"))
    return found


def copy(record: dict[str, Any], source: Path, target: Path) -> None:
    """Copies a record's sidecar file (checked) from one study directory to another, before the record is
    appended there (merge): the record never names a file its directory lacks."""
    if (record.get("outputs") or {}).get("per_example") is None:
        return
    data = verified_bytes(record, source)
    path = target / file_name(record["outputs"]["per_example"]["sha256"])
    if not (path.is_file() and path.read_bytes() == data):
        replace_atomically(path, data)


def _inline(outputs: dict[str, Any], examples: int | None) -> dict[str, np.ndarray] | None:
    """The arrays of a record from before the sidecar: base64 in the record itself."""
    arrays = {}
    if "test_predicted_classes_b64" in outputs:
        classes = base64.b64decode(outputs["test_predicted_classes_b64"])
        arrays[PREDICTED_CLASSES_ARRAY] = np.frombuffer(classes, np.uint8)
    if "test_correct_b64" in outputs:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(outputs["test_correct_b64"]), np.uint8))
        arrays[CORRECT_ARRAY] = bits[:examples] if examples is not None else bits
    return arrays or None
