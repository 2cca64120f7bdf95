"""The docs match the code: every command they show names a real make target, program and flag."""

import re
import subprocess

from conftest import DOCS, REPO, run_program


def _code(path):
    """The text of a doc's code: fenced blocks and inline `code`, continued lines joined."""
    text = path.read_text()
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return [block.replace("\\\n", " ") for block in [*fenced, *inline]]


def _make_n(target):
    """What `make TARGET` would run on a fresh clone (-B), as a top-level make prints it (also under `make test`)."""
    return subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_every_make_target_the_docs_show_exists():
    shown = {(path.name, target) for path in DOCS for code in _code(path)
             for target in re.findall(r"(?:^|\s|;|&&)make ([a-z][\w-]*)", code, re.MULTILINE)}
    assert len(shown) > 10
    # -n -B: print what each would run, as on a fresh clone; an unknown target fails.
    for name, target in sorted(shown):
        dry = _make_n(target)
        assert dry.returncode == 0, f"{name} shows `make {target}`: {dry.stderr.strip()}"


def test_every_flag_the_docs_and_make_targets_give_a_program_is_one_it_defines():
    commands = [(path.name, code) for path in DOCS for code in _code(path)]
    for target in ("bench", "gate", "gate-baseline", "tune-example", "report", "speed"):
        dry = _make_n(target)
        commands.append((f"make {target}", dry.stdout.replace("\\\n", " ")))
    given: dict[str, set[tuple[str, str]]] = {}
    for where, code in commands:
        for match in re.finditer(r"-m (harness\.\w+)((?:[ \t]+\[?--\w+(?:=[^\s\]]*)?\]?)*)", code):
            for flag in re.findall(r"--(\w+)", match.group(2)):
                given.setdefault(match.group(1), set()).add((where, flag))
    assert {"harness.bench", "harness.gate", "harness.report", "harness.doctor", "harness.reeval"} <= set(given)
    for program, flags in sorted(given.items()):
        assert (REPO / (program.replace(".", "/") + ".py")).exists(), f"{program} is not a program"
        helpfull = run_program(program, "--helpfull").stdout
        defined = set(re.findall(r"--(?:\[no\])?(\w+):", helpfull))
        unknown = sorted(f"{where}: --{flag}" for where, flag in flags if flag not in defined)
        assert unknown == [], f"{program} has no such flag: {unknown}"
