"""`python -m harness.validate FILE...`: check records against the JSON Schemas shipped in the package.

    python -m harness.validate results/digits_mlp/trials.jsonl results/digits_mlp/summary.json

A `.json` file holds one record; any other file is JSON lines, one record per
line. Every invalid record is reported with its file and line number, and so is
a trial recorded twice (its key again, or its study, condition, repeat and
seeds again under another key), and so is a trial whose per-example file
(per_example/<sha256>.npz beside the records) is missing or does not match the
hash its record holds. A summary with two rows of one condition is invalid, and
so is one whose study directory's trials.jsonl is not the records it counted
(another study's, fewer, a trial twice, a per-example file changed): the check
the gate and the report make before they read a study directory. A torn
last line (a write a kill interrupted) is reported but is not an error:
readers ignore it and the next append cuts it off.

Exit 0 when every record is valid, 1 when any is not, 2 when a file cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import cli
from harness.analysis.summary import check_records_beside, repeated_rows
from harness.errors import UsageError
from harness.schema import SUMMARY_FILE, SUMMARY_SCHEMA, TRIAL_SCHEMA, TRIALS_FILE
from harness.studies import per_example
from harness.studies.records import (
    NotStrictJson,
    has_torn_tail,
    repeated_trials,
    scan_lines,
    schema_errors,
    strict_json_loads,
)


def validate_file(path: Path) -> tuple[int, list[str]]:
    """(records checked, problems) of one file; each problem names the file and line."""
    if path.exists() and not path.is_file():
        # A pipe would block, /dev/zero never ends: only regular files hold records.
        raise UsageError(f"{path} is not a regular file (a directory, device or pipe); name a record file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if path.suffix == ".json":
        try:
            record = strict_json_loads(data)
        except NotStrictJson as error:
            return 1, [f"{path}: holds {error}"]
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            return 1, [f"{path}: not valid JSON ({error})"]
        if not isinstance(record, dict):
            return 1, [f"{path}: not a JSON object"]
        errors = schema_errors(record)
        if errors or record.get("schema") != SUMMARY_SCHEMA:
            return 1, [f"{path}: {e}" for e in errors]
        return 1, [f"{path}: {e}" for e in repeated_rows(record)] or _records_beside(record, path)
    checked, problems, parsed = 0, [], []
    for number, record, problem in scan_lines(data):
        checked += 1
        errors = [problem] if problem else schema_errors(record)
        problems += [f"{path} line {number}: {e}" for e in errors]
        if record is not None and record.get("schema") == TRIAL_SCHEMA:
            parsed.append((number, record))
    # A trial recorded twice is counted twice by whatever reads the file.
    problems += [f"{path} line {number}: {why}" for number, why in repeated_trials(parsed)]
    # Only valid records name their file where their schema says (a path is made of the name).
    named = [(number, record) for number, record in parsed if not schema_errors(record)]
    problems += [f"{path} line {number}: {why}" for number, why in per_example.problems(named, path.parent)]
    return checked, problems


def _records_beside(summary: dict, path: Path) -> list[str]:
    """A study directory's summary.json checked against the trials.jsonl beside it, as the gate and the report
    check it (summary.check_records_beside): its first problem, or none."""
    trials_path = path.parent / TRIALS_FILE
    if path.name != SUMMARY_FILE or not (trials_path.exists() or trials_path.is_symlink()):
        return []
    try:
        check_records_beside(summary, path, trials_path)
    except UsageError as error:
        return [f"{path}: the gate and the report refuse it: {error}"]
    return []


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv[1:]]
    if not paths:
        raise UsageError("name at least one record file, e.g. python -m harness.validate results/x/trials.jsonl")
    total, invalid = 0, 0
    for path in paths:
        checked, problems = validate_file(path)
        total += checked
        invalid += len({p.split(":", 1)[0] for p in problems})
        for problem in problems:
            print(problem)
        if path.suffix != ".json" and has_torn_tail(path.read_bytes()):
            print(f"{path}: the last line is torn (no newline; a killed write), ignored by readers")
    files = f"{len(paths)} file{'s' if len(paths) > 1 else ''}"
    print(f"{total} record(s) in {files}: {'all valid' if not invalid else f'{invalid} invalid'}")
    return 1 if invalid else 0


if __name__ == "__main__":
    cli.run(main, positional_args=True)
