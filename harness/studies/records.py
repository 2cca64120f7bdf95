"""Trial records: how they are identified, written, read and validated.

The one place that writes records. A record is appended as one whole line
with a single `write`, then fsync'ed, under an exclusive lock, so parallel
writers never interleave and a kill never loses a record already written. A
kill mid-write can leave a torn last line; the next append cuts it off and
readers ignore it, so `trials.jsonl` only ever holds whole, valid lines.
"""

from __future__ import annotations

import datetime
import fcntl
import functools
import hashlib
import json
import math
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.files import replace_atomically
from harness.redaction import redact
from harness.schema import SCHEMA_FILES, TRIAL_SCHEMA
from harness.trial.config import TrialConfig
from harness.trial.seeds import SeedSet

if TYPE_CHECKING:
    import jsonschema


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def content_id(identity: Any, length: int = 12) -> str:
    """A short name derived from what something is: the same identity always gives the same id. Computed over
    the identity as records hold it, secrets redacted: an id is written beside the record, and a short hash of a
    config holding a weak password would let anyone who reads it try passwords."""
    return hashlib.sha256(canonical_json(redact(identity)).encode()).hexdigest()[:length]


def utc_timestamp() -> str:
    """When a record is made: UTC, to the second (every record's `created_at`)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def trial_key(config: TrialConfig, seeds: SeedSet, condition: str, repeat: int) -> str:
    """A stable name for a trial: the same config, seeds, condition and repeat give the same key."""
    identity = {"config": config.as_dict(), "seeds": seeds.as_dict(), "condition": condition,
                "repeat": repeat}
    return content_id(identity, length=20)


def trial_identity(record: dict[str, Any]) -> str:
    """What makes a record one trial of a study whatever its key says: its study, condition, repeat and seeds.
    Two records with one identity are the same trial recorded twice (a copy under a new key, or one run as a
    replica and again alone, whose keys differ in `replicas`): a summary counting both would double n."""
    return canonical_json([record.get("study_id"), record.get("condition"), record.get("repeat"),
                           record.get("seeds")])


def repeated_trials(numbered: list[tuple[int, dict[str, Any]]], unit: str = "line") -> list[tuple[int, str]]:
    """(number, why) for each record of `numbered` ((line or record number, record)) that repeats an earlier
    one: the same trial key, or the same trial (trial_identity) under another key."""
    by_key: dict[Any, int] = {}
    by_identity: dict[str, int] = {}
    found = []
    for number, record in numbered:
        key, identity = record.get("trial_key"), trial_identity(record)
        if key in by_key:
            found.append((number, f"repeats trial {key} of {unit} {by_key[key]} (a duplicate record)"))
        elif identity in by_identity:
            found.append((number, f"is trial {record.get('condition')} repeat {record.get('repeat')} of {unit} "
                                  f"{by_identity[identity]} again, under another key (a copy, or the trial run "
                                  "twice another way): a summary would count it twice"))
        by_key.setdefault(key, number)
        by_identity.setdefault(identity, number)
    return found


def make_trial_record(*, config: TrialConfig, seeds: SeedSet, condition: str, repeat: int,
                      study_id: str, result: Any, environment: dict[str, Any],
                      inputs: dict[str, Any]) -> dict[str, Any]:
    """A `harness.trial/1` record from a trial's inputs (`inputs`: which model code and data) and its `TrialResult`,
    as it is written: secrets redacted (a --model_args api_key, a --data_dir URL's password)."""
    return redact({
        "schema": TRIAL_SCHEMA,
        "trial_key": trial_key(config, seeds, condition, repeat),
        "study_id": study_id,
        "created_at": utc_timestamp(),
        "benchmark": config.benchmark,
        "condition": condition,
        "repeat": repeat,
        "config": config.as_dict(),
        "seeds": seeds.as_dict(),
        "environment": environment,
        "model": {**inputs["model"], **result.model},
        "data": inputs["data"],
        "status": result.status,
        "metrics": result.metrics,
        "fingerprints": result.fingerprints,
        "outputs": result.outputs,
        "timing": result.timing,
    })


def finite_json(value: Any) -> Any:
    """JSON has no NaN or Infinity: non-finite floats are recorded as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def record_text(document: Any, indent: int | None = None) -> str:
    """A record or document as written: strict JSON (non-finite floats as null), sorted keys, secrets redacted
    (harness/redaction.py). Every record writer goes through here."""
    return json.dumps(redact(finite_json(document)), indent=indent, sort_keys=True, allow_nan=False)


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Appends one record as one line, durably, safe against kills and concurrent writers."""
    line = (record_text(record) + "\n").encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _cut_torn_tail(fd)
        size = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as error:
            # A full disk mid-line: take the part back, so the file ends with its last whole record.
            os.ftruncate(fd, size)
            raise OSError(error.errno, error.strerror, str(path)) from None
    finally:
        os.close(fd)  # Closing releases the lock.
    if created:
        _fsync_directory(path.parent)


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Writes a whole JSON document atomically: readers see the old file or the new one, never half."""
    replace_atomically(path, record_text(document, indent=1) + "\n")


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Writes a whole JSON-lines file of records atomically (e.g. a merge of shards)."""
    replace_atomically(path, "".join(record_text(r) + "\n" for r in records))


def _cut_torn_tail(fd: int) -> None:
    """Truncates a last line that has no newline: a write that a kill interrupted."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every whole record in a JSON-lines file; a torn last line (no newline) is ignored.

    A complete line that is not a JSON object is damage nobody expected, and
    is reported with its line number rather than skipped silently.
    """
    path = Path(path)
    records = []
    for number, record, problem in scan_lines(_read_bytes(path)):
        if problem:
            raise UsageError(f"{path} line {number} {problem}.")
        records.append(record)
    return records


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}.") from None


def scan_lines(data: bytes) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, record, problem) for every non-blank whole line; problem is None when it parsed.

    Only whole lines count: after the last newline is either nothing or a
    line a kill tore, which readers ignore (`has_torn_tail` tells which).
    """
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = strict_json_loads(line)
        except NotStrictJson as error:
            yield number, None, f"holds {error}"
            continue
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            yield number, None, "is not valid JSON"
            continue
        if not isinstance(record, dict):
            yield number, None, "is not a JSON object"
            continue
        yield number, record, None


class NotStrictJson(ValueError):
    """Text Python's json would read but JSON does not have (NaN, Infinity, 1e999) or Python cannot hold
    (an integer of thousands of digits, nesting thousands deep). str() says what: `NaN, which is not JSON
    (RFC 8259)`."""


def _refuse_constant(name: str) -> Any:
    raise NotStrictJson(f"{name}, which is not JSON (RFC 8259)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJson(f"{text}, which is not JSON (RFC 8259)")
    return value


def _bounded_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # Python refuses integers of more than sys.get_int_max_str_digits() digits
        raise NotStrictJson(f"an integer of {len(text.lstrip('-'))} digits, more than the harness reads") from None


def strict_json_loads(text: str | bytes) -> Any:
    """json.loads that raises NotStrictJson, not a traceback, for NaN, Infinity, overflowing numbers
    (1e999), huge integers and absurd nesting: records never hold them (finite_json writes null), so
    text that does was not written by the harness."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        raise NotStrictJson("arrays or objects nested deeper than the harness reads") from None


def load_document(data: str | bytes, name: str) -> Any:
    """`strict_json_loads` of a whole file's content, its failures said in one sentence naming the file."""
    try:
        return strict_json_loads(data)
    except NotStrictJson as error:
        raise UsageError(f"{name} holds {error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise UsageError(f"{name} is not valid JSON") from None


def has_torn_tail(data: bytes) -> bool:
    return bool(data) and not data.endswith(b"\n")


@functools.cache
def load_schema(schema_id: str) -> dict[str, Any]:
    if schema_id not in SCHEMA_FILES:
        raise UsageError(f"unknown record schema {schema_id!r}; this version knows {', '.join(SCHEMA_FILES)}.")
    text = resources.files("harness").joinpath("schema", SCHEMA_FILES[schema_id]).read_text()
    return json.loads(text)


def schema_errors(record: dict[str, Any]) -> list[str]:
    """Problems that make `record` invalid against the schema its `schema` field names; [] if valid."""
    schema_id = record.get("schema")
    if schema_id not in SCHEMA_FILES:
        return [f"unknown or missing schema field {schema_id!r}"]
    validator = _validator(schema_id)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}"
            for e in sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))]


@functools.cache
def _validator(schema_id: str) -> jsonschema.Draft202012Validator:
    import jsonschema  # here: a third of a second, and the flags' modules (a program's --help) import this one

    schema = load_schema(schema_id)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)
