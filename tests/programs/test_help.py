"""--help on every program: the flags it reads, grouped by purpose, on stdout with exit 0, and without
importing TensorFlow (or anything else that takes seconds to import): help that takes 18 s is not read."""

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, run_program

from harness.flags import RAY_FLAGS
from harness.trial_flags import CONFIG_FLAGS, SEED_FLAGS

# Every program: a module of harness/ that starts through cli.run. A new program is covered as it is added.
PROGRAMS = sorted(f"harness.{path.stem}" for path in (REPO / "harness").glob("*.py") if "cli.run(" in path.read_text())
# What a program's --help must not import: seconds each (TensorFlow alone is over ten).
HEAVY = ("tensorflow", "keras", "optuna", "matplotlib", "scipy.stats")
# Flags of absl's and TensorFlow's that are no program's: --helpfull shows them, --help does not.
INTERNAL = re.compile(r"(^|_)(tpu|test)|logtostderr|log_dir|stderrthreshold|showprefix|logger_levels|pdb|profil|"
                      r"only_check")
# The shared helpers a program calls, and the flags each reads for it.
HELPERS = {"trial_flags.config_from_flags": CONFIG_FLAGS, "trial_flags.config_overrides": CONFIG_FLAGS,
           "trial_flags.seeds_from_flags": SEED_FLAGS, "score_flags.scoring_from_flags": ("metric",),
           "score_flags.replicas_flag": ("replicas",), "score_flags.replicas_from_flags": ("replicas",),
           "executor_from_flags": RAY_FLAGS}
# Flags a program reads only to refuse them, which its --help leaves out.
REFUSED = {"harness.bench": {"determinism"}}  # each condition sets op determinism itself

# Imports each program as a module, then parses --help as the program would: what it printed, its exit code,
# the heavy modules imported so far, and the flags it defines.
HELP_IN_ONE_PROCESS = """
import contextlib, importlib, io, json, sys
from absl import flags
from harness import cli

found = {}
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    cli.define_help_flags(module)
    printed, code = io.StringIO(), None
    with contextlib.redirect_stdout(printed):
        try:
            flags.FLAGS([name, "--help"])
        except SystemExit as exit:
            code = exit.code
    found[name] = {"code": code, "help": printed.getvalue(), "doc": module.__doc__,
                   "heavy": [m for m in json.loads(sys.argv[1]) if m in sys.modules],
                   "defines": [flag.name for flag in flags.FLAGS.get_flags_for_module(name)]}
print(json.dumps({"programs": found, "flags": list(flags.FLAGS)}))
"""


@pytest.fixture(scope="module")
def helps():
    assert {"harness.bench", "harness.report", "harness.gate", "harness.validate", "harness.worker"} <= set(PROGRAMS)
    result = subprocess.run([sys.executable, "-c", HELP_IN_ONE_PROCESS, json.dumps(HEAVY), *PROGRAMS], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def listed(text: str) -> list[str]:
    """The flags a help text lists, as absl writes them: `  --name:`, `  --[no]name:`, `  -s,--name:`."""
    return re.findall(r"^  (?:-\S,)?--(?:\[no\])?(\w+)(?:,--\w+)*:", text, re.MULTILINE)


def flags_read(program: str, defined: set[str]) -> set[str]:
    """The flags a program's source reads: FLAGS.name, FLAGS["name"], value_or("name", ...), and those of the
    shared helpers it calls."""
    source = (REPO / (program.replace(".", "/") + ".py")).read_text()
    read = {name for match in re.findall(r"FLAGS\.(\w+)|FLAGS\[\"(\w+)\"\]|value_or\([\"'](\w+)", source)
            for name in match if name in defined}
    for helper, names in HELPERS.items():
        if f"{helper}(" in source:
            read |= set(names)
    return read - REFUSED.get(program, set())


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_lists_exactly_the_flags_the_program_reads_without_importing_tensorflow(helps, program):
    found = helps["programs"][program]
    assert found["code"] == 0
    assert found["heavy"] == [], f"importing {program} imports {found['heavy']}"
    text = found["help"]
    assert text.startswith(found["doc"].strip().splitlines()[0])
    flags_section = text[text.index("Flags ("):]
    shown = listed(flags_section)
    assert len(shown) == len(set(shown)), f"a flag listed twice: {shown}"
    general = {"flagfile", "verbosity", "help", "helpfull"}
    assert set(shown) - general == set(found["defines"]) | flags_read(program, set(helps["flags"]))
    assert [name for name in shown if INTERNAL.search(name)] == []


def test_shared_flags_are_grouped_by_what_they_are_for(helps):
    text = helps["programs"]["harness.tune"]["help"]
    headers = re.findall(r"^(\S.*):$", text[text.index("Flags ("):], re.MULTILINE)[1:]
    # The main flags first (tune's --metric among them, so scoring's group has nothing else to list for tune).
    assert headers == ["the main flags", "harness.tune", "the trial; a config flag given overrides that field of "
                       "the benchmark (harness.trial_flags)", "shared with other programs (harness.flags)",
                       "every program"]
    # define_float defines a flag for the module that calls it: tune's bound is tune's, the learning rate the trial's.
    own = text[text.index("\nharness.tune:"):].split("\n\n")[0]
    assert "--lcb_confidence:" in own and "--learning_rate:" not in own


def test_the_main_flags_come_first_and_thresholds_say_their_unit(helps):
    bench = helps["programs"]["harness.bench"]["help"]
    flags_section = bench[bench.index("Flags ("):]
    assert listed(flags_section)[:8] == ["benchmark", "model", "data", "conditions", "repeats", "epochs", "seed",
                                         "output_dir"]
    gate = helps["programs"]["harness.gate"]["help"]
    assert listed(gate[gate.index("Flags ("):])[:2] == ["baseline", "candidate"]
    assert "Threshold (default" not in gate
    assert "--accuracy_tolerance: How far the candidate's mean test accuracy may fall\n    below the baseline's, a " \
           "fraction (0.01: 1 percentage point); default 0.01." in gate


def test_the_internal_objective_runner_answers_help_at_once():
    result = run_program("harness.objective_run", "--help", env_vars={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0 and result.stdout.startswith("`python -m harness.objective_run SPEC PARAMS_JSON")
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert imported and not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "optuna")}
    wrong = run_program("harness.objective_run", "only-one")
    assert (wrong.returncode, wrong.stderr) == (2, "error: harness.objective_run takes SPEC PARAMS_JSON TRIAL SEED "
                                                   "(4 arguments), got 1; harness.reeval --objective=FILE.py:FUNCTION "
                                                   "starts it.\n")


def test_bench_help_in_a_fresh_process():
    result = run_program("harness.bench", "--help", env_vars={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    for flag in ("benchmark", "repeats", "conditions", "output_dir", "epochs", "model", "data"):
        assert f"\n  --{flag}:" in result.stdout
    assert not INTERNAL.search(" ".join(listed(result.stdout)))
    # PYTHONPROFILEIMPORTTIME (-X importtime) writes every module imported to stderr.
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert imported and not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras")}


@pytest.mark.parametrize("program,flag", [("harness.report", "-h"), ("harness.gate", "--helpshort"),
                                          ("harness.doctor", "-?"), ("harness.worker", "--help")])
def test_every_help_flag_prints_on_stdout_and_exits_0(program, flag):
    """absl's help exits 1 (a failed CI step) and has no -h; the doctor takes the script's own flags after its
    name, and the worker requires --output_dir: --help still answers."""
    result = run_program(program, flag)
    assert (result.returncode, result.stderr) == (0, "")
    assert "Flags (--helpfull lists every flag):" in result.stdout and "\n  --flagfile:" in result.stdout


def test_helpfull_lists_every_flag_and_exits_0():
    result = run_program("harness.scan", "--helpfull")
    assert result.returncode == 0, result.stderr
    assert "\n  --benchmark:" in result.stdout and "\n  --seed:" in result.stdout  # scan reads no seed: not in --help
    assert "\n  --seed:" not in run_program("harness.scan", "--help").stdout
