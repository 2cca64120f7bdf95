"""Every command the docs show runs as written, and exits as the doc shows (docs/architecture.md, "Commands
in the docs").

A documented command is a line of a fenced code block in README.md or docs/*.md (not a ```python block) that
starts, after an optional `$ ` prompt and VAR=value prefixes, with `make ` or `python -m harness.` (any
`.../python`); a line ending in `\\` goes on in the next. It exits 0 unless its line ends in a comment that
says `exits N`. A block preceded by `<!-- not run by tests: REASON -->` is not run, nor is a command the marker
names (`<!-- not run by tests (make test): REASON -->`). In a ```sh block the lines before a command that are
not themselves documented commands (`python examples/optuna_objective.py`) run first, as a reader runs them.

The slow test runs every other command in a copy of the repository, in the docs' order (README.md first), so
that `results/...` names the studies the commands before made: `make bench` makes the default study that
`make report`, `harness.validate` and `harness.rerun` read.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CALLBACK_SCRIPT, DOCS, REPO, write_user_files

from harness.table import format_table

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<lang>[^\n]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                   re.MULTILINE | re.DOTALL)
COMMAND = re.compile(r"(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:make\s|(?:\S*/)?python3? -m harness\.)")
MARKER = re.compile(r"<!-- (?P<kind>not run by tests|tests stop this once it runs)(?: \((?P<names>[^)]+)\))?: "
                    r"(?P<reason>.+?) -->")
# A shell comment: `#` after white space, outside quotes (no documented command quotes a `#`).
COMMENT = re.compile(r"\s#\s?(?P<comment>.*)$")
EXITS = re.compile(r"\bexits (\d+)\b")
RUN, NOT_RUN, STOPPED = "run", "not run by tests", "tests stop this once it runs"
# A STOPPED command got past every refusal (a flag, a path, another study in its directory: all before any trial)
# once it reports a finished unit of work (`[1/130] control: ...`), or has run this long: the tests stop it there.
STARTED = re.compile(r"^\[\d+/\d+\] ", re.MULTILINE)
STOPPED_AFTER_S = 60


@dataclass(frozen=True)
class DocCommand:
    doc: str            # as README.md or docs/speed.md
    line: int           # where the command starts
    text: str           # as a reader types it: prompt, continuations and trailing comment left out
    exits: int          # the exit status the doc shows
    how: str = RUN      # RUN, NOT_RUN, or STOPPED: run until it has run a minute (a marker says why)
    reason: str = ""    # the marker's reason for NOT_RUN or STOPPED
    setup: tuple[str, ...] = ()  # the lines before it in its ```sh block that are not documented commands


def _shell_lines(body: str, first_line: int, indent: str):
    """(line number, line) of a block's shell lines: continuations joined, a `$ ` transcript's output left out."""
    raw = [line[len(indent):] if line.startswith(indent) else line for line in body.split("\n")]
    transcript = any(line.startswith("$ ") for line in raw)
    number = 0
    while number < len(raw):
        start, line = first_line + number, raw[number]
        while line.endswith("\\") and number + 1 < len(raw):
            number += 1
            line = line[:-1].rstrip() + " " + raw[number].strip()
        number += 1
        if transcript and not line.startswith("$ "):
            continue
        line = line.removeprefix("$ ").strip()
        if line and not line.startswith("#"):
            yield start, line


def documented_commands(docs=DOCS) -> list[DocCommand]:
    """Every documented command of these docs, in their order."""
    commands = []
    for path in docs:
        text, name = path.read_text(), str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
        for block in FENCE.finditer(text):
            lang = block["lang"].strip()
            if lang == "python":
                continue
            before = text[:block.start()].rstrip("\n").split("\n")
            markers = []
            while before and MARKER.search(before[-1]):
                markers.append(MARKER.search(before.pop()))
            first_line = text.count("\n", 0, block.start("body")) + 1
            setup: list[str] = []
            for line_number, line in _shell_lines(block["body"], first_line, block["indent"]):
                comment = COMMENT.search(line)
                command = line[:comment.start()].rstrip() if comment else line
                if not COMMAND.match(command):
                    if lang == "sh":
                        setup.append(line)
                    continue
                exits = EXITS.search(comment["comment"]) if comment else None
                marker = next((marker for marker in markers
                               if marker["names"] is None or command.startswith(marker["names"])), None)
                commands.append(DocCommand(name, line_number, command, int(exits[1]) if exits else 0,
                                           marker["kind"] if marker else RUN, marker["reason"] if marker else "",
                                           tuple(setup)))
    return commands


def test_the_extractor_reads_every_form_a_doc_writes_a_command_in(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("""\
Text with `make inline` in it.

```sh
make bench   # the default study
OUTPUT_DIR=results/x make bench ARGS="--workers=2"
.venv/bin/python examples/setup.py     # not a harness command: runs first
.venv/bin/python -m harness.gate --baseline=a.json \\
    --candidate=b   # exits 1: a regression
```

1. A list item, a transcript (its commands after `$ `, its output without):

   ```
   $ python -m harness.diverge --b_flip_bit=500
   ...
   make this output line no command
   ```

```python
make = python -m harness.bench
```

<!-- not run by tests: needs a GPU -->
```sh
make bench GPU=1
```

<!-- not run by tests (make test): the quick tier itself -->
```sh
make bench
make test
```

<!-- tests stop this once it runs: minutes -->
```sh
make speed
```
""")
    assert documented_commands([doc]) == [
        DocCommand("doc.md", 4, "make bench", 0),
        DocCommand("doc.md", 5, 'OUTPUT_DIR=results/x make bench ARGS="--workers=2"', 0),
        DocCommand("doc.md", 7, ".venv/bin/python -m harness.gate --baseline=a.json --candidate=b", 1,
                   setup=(".venv/bin/python examples/setup.py     # not a harness command: runs first",)),
        DocCommand("doc.md", 14, "python -m harness.diverge --b_flip_bit=500", 0),
        DocCommand("doc.md", 25, "make bench GPU=1", 0, NOT_RUN, "needs a GPU"),
        DocCommand("doc.md", 30, "make bench", 0),
        DocCommand("doc.md", 31, "make test", 0, NOT_RUN, "the quick tier itself"),
        DocCommand("doc.md", 36, "make speed", 0, STOPPED, "minutes"),
    ]


def _make_traces(workspace: Path) -> None:
    """run_a.jsonl and run_b.jsonl, two traces of a fit with the callback, as the snippet above the command writes
    them."""
    (workspace / "fit_with_callback.py").write_text(CALLBACK_SCRIPT)
    for run in ("run_a", "run_b"):
        subprocess.run([".venv/bin/python", "fit_with_callback.py", f"{run}.jsonl"], cwd=workspace, check=True,
                       capture_output=True, timeout=300)


# What a command needs that its doc leaves to the reader (the reader's own files), by a part of its text.
NEEDS = {
    "--traces=run_a.jsonl,run_b.jsonl": _make_traces,
    "--model=my_model.py:create_model --data=npz:my_data.npz": lambda workspace: write_user_files(
        workspace / "my_model.py", workspace / "my_data.npz"),
}
# The documented commands the tests do not run, or stop once they run, as (doc, the command up to its first flag,
# which): each doc says why, in its marker.
NOT_RUN_HERE = sorted([
    ("README.md", "make test", NOT_RUN),
    *[("docs/containers.md", command, NOT_RUN) for command in (
        "make image", "make image GPU=1", "make bench GPU=1",
        'make bench GPU=1 BENCHMARK=cifar10_cnn DATASETS=cifar10 ARGS="--conditions=control,kernels,all"')],
    *[("docs/scale-out.md", ".venv/bin/python -m harness.bench", NOT_RUN)] * 3,
    ("README.md", ".venv/bin/python -m harness.bench", STOPPED),
    ("docs/speed.md", "make speed", STOPPED),
    ("docs/speed.md", 'make bench OUTPUT_DIR=results/mnist1d_mlp_workers ARGS="--workers=2', STOPPED),
    ("docs/tuning.md", ".venv/bin/python -m harness.reeval", STOPPED),
    ("docs/your-own-model.md", ".venv/bin/python -m harness.tune", STOPPED),
    *[("docs/your-own-model.md", ".venv/bin/python -m harness.bench", STOPPED)] * 3,
])


def test_the_docs_show_their_commands_and_few_are_not_run():
    commands = documented_commands()
    shown = {(command.doc, command.text) for command in commands}
    # A few the docs must go on showing, so that the extractor is known to find them where they are.
    assert {("README.md", "make bench"), ("docs/records.md", "make report"),
            ("docs/speed.md", 'make bench OUTPUT_DIR=results/mnist1d_mlp_workers ARGS="--workers=2 '
                              '--intra_op_threads=1 --inter_op_threads=1"'),
            ("docs/doctor.md", ".venv/bin/python -m harness.doctor examples/shuffle_then_report.py"),
            ("docs/speed.md", ".venv/bin/python -m harness.rerun --input_dir=results/mnist1d_mlp "
                              "--trial_key=9910ab99")} <= shown
    assert len(commands) >= 25
    # Every command is run to its end by the slow test below, or not (these and no more), for a reason its doc gives.
    assert sorted((command.doc, command.text.split(" --")[0], command.how) for command in commands
                  if command.how != RUN) == NOT_RUN_HERE
    assert all(command.reason for command in commands if command.how != RUN)
    for needle in NEEDS:
        assert sum(needle in command.text for command in commands) == 1, f"{needle!r} names no one command"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the repository as git sees it (tracked and new files; results/ and .venv left out) whose .venv is
    the repository's own."""
    root = tmp_path_factory.mktemp("documented_commands") / "repository"
    root.mkdir()
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout
    for name in filter(None, os.fsdecode(listed).split("\0")):
        if (REPO / name).is_file():  # not a tracked file deleted in the work tree
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / ".venv").symlink_to(REPO / ".venv")
    # `make` reinstalls .venv when setup.cfg or pyproject.toml is newer than .venv/.installed: the copies must not
    # be, or the repository's .venv would be installed from (and left pointing into) this temporary copy.
    installed = REPO / ".venv" / ".installed"
    assert installed.exists(), "the tests need the .venv `make` installs (make test-slow makes it first)"
    for name in ("setup.cfg", "pyproject.toml"):
        os.utime(root / name, (installed.stat().st_mtime - 1,) * 2)
    return root


def _environment() -> dict[str, str]:
    """The environment a reader's shell has: this one without what pytest, or a `make test-slow` above it, set."""
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")
            and not name.startswith("PYTEST_")}


def _run(command: str, workspace: Path, stop: bool = False) -> tuple[int | str, str, float]:
    """(exit status, or "stopped" when `stop` and it got going (STARTED, STOPPED_AFTER_S); the end of its output;
    seconds) of a command line run by bash in `workspace`."""
    start, log = time.monotonic(), workspace.parent / "command.log"
    deadline = start + (STOPPED_AFTER_S if stop else 1800)
    with log.open("w") as out, subprocess.Popen(["bash", "-c", command], cwd=workspace, env=_environment(),
                                                stdout=out, stderr=subprocess.STDOUT,
                                                start_new_session=True) as process:
        while process.poll() is None and time.monotonic() < deadline:
            if stop and STARTED.search(log.read_text()):
                break
            time.sleep(0.5)
        status: int | str = process.poll() if process.poll() is not None else "stopped" if stop else "timed out"
        if process.poll() is None:
            # Its process group: the program and every process it started (make's child, worker processes).
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    return status, log.read_text()[-2000:], time.monotonic() - start


@pytest.mark.slow
def test_every_documented_command_exits_as_its_doc_shows(workspace, capsys):
    rows, wrong, ran = [], [], {}
    for command in documented_commands():
        where = f"{command.doc}:{command.line}"
        if command.how == NOT_RUN:
            rows.append((where, command.text, command.exits, "not run", "-"))
            continue
        if command.text in ran:  # the same command in another doc: run once
            status, first = ran[command.text]
            rows.append((where, command.text, command.exits, f"{status} (as {first})", "-"))
            if status not in (command.exits, "stopped"):
                wrong.append(f"{where}: `{command.text}` exited {status} (at {first}); the doc shows {command.exits}")
            continue
        for needle, make in NEEDS.items():
            if needle in command.text:
                make(workspace)
        for line in command.setup:
            status, output, seconds = _run(line, workspace)
            rows.append((f"{where} (before)", line, 0, status, f"{seconds:.0f}"))
            if status != 0:
                wrong.append(f"{where}: `{line}`, run before it, exited {status}:\n{output}")
        status, output, seconds = _run(command.text, workspace, stop=command.how == STOPPED)
        ran[command.text] = status, where
        rows.append((where, command.text, command.exits, status, f"{seconds:.0f}"))
        if status not in (command.exits, "stopped"):
            wrong.append(f"{where}: `{command.text}` exited {status}; the doc shows {command.exits}:\n{output}")
    table = format_table(["where", "command", "doc's exit", "exit", "s"], rows)
    with capsys.disabled():
        print(f"\n{table}")
    assert wrong == [], "\n\n".join(wrong)
