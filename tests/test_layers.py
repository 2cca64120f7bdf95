"""The house's rules, read from the import graph: imports only go down a layer (a module may import its
own layer and those below), and no module imports a program."""

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"
TESTS = Path(__file__).resolve().parent
# Bottom to top. `common`: errors, files (the atomic writer), redaction (what no output may carry), table, the
# version, the schema table. `interface`: what
# programs and users call (the Python API, the Keras callback, flag parsing, the program runner).
# `program`: `python -m harness.X`.
LAYERS = ("common", "platform", "trial", "studies", "analysis", "tuning", "interface", "program")
INTERFACE = {"api", "keras", "cli", "flags", "score_flags", "trial_flags"}


def module_name(path: Path) -> str:
    parts = path.relative_to(HARNESS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in HARNESS.rglob("*.py")}


def is_program(path: Path) -> bool:
    return path.parent == HARNESS and 'if __name__ == "__main__":' in path.read_text()


def layer(name: str, path: Path) -> str:
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and path.name == "__init__.py"):
        return "common" if parts[1] == "schema" else parts[1]
    if name == "harness" or parts[1] in ("errors", "files", "redaction", "table", "version"):
        return "common"
    return "program" if is_program(path) else "interface" if parts[1] in INTERFACE else "unplaced"


def imports(path: Path, known: dict[str, Path], run_time: bool = False) -> set[str]:
    """The harness modules `path` imports, at any depth (imports inside functions count); with `run_time`, not
    those under `if TYPE_CHECKING:`, which only a type checker reads."""
    tree = ast.parse(path.read_text())
    typing_only = {id(inner) for node in ast.walk(tree) if run_time and isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("harness")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("harness"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
    return found


def test_every_module_has_a_layer():
    known = modules()
    assert [name for name, path in known.items() if layer(name, path) == "unplaced"] == []


def test_imports_only_go_down_and_nothing_imports_a_program():
    known = modules()
    wrong = []
    for name, path in known.items():
        if name == "harness":
            continue  # the package's lazy `harness.study` re-export of the Python API (interface)
        own = LAYERS.index(layer(name, path))
        for target in imports(path, known) - {name}:
            target_layer = layer(target, known[target])
            if target_layer == "program" or LAYERS.index(target_layer) > own:
                wrong.append(f"{name} ({layer(name, path)}) imports {target} ({target_layer})")
    assert wrong == []


def test_no_modules_import_each_other():
    """No circle of imports (at any depth, imports inside functions too): a circle means two modules each need
    the other, so neither sits on a floor of its own. (The package `harness` itself, whose lazy `harness.study`
    re-exports the API, is left out: a module that imports it would close a circle through the API.)"""
    known = modules()
    graph = {name: imports(path, known, run_time=True) - {name} for name, path in known.items() if name != "harness"}
    circles = set()

    def walk(name: str, path: list[str]) -> None:
        for target in sorted(graph.get(name, ())):
            if target in path:
                circle = path[path.index(target):]
                first = circle.index(min(circle))
                circles.add(" -> ".join(circle[first:] + circle[:first] + [min(circle)]))
            elif target not in seen:
                walk(target, [*path, target])
        seen.add(name)

    seen: set[str] = set()
    for name in sorted(graph):
        if name not in seen:
            walk(name, [name])
    # A module that imports the package `harness` closes a circle through its lazy import of the API.
    through_the_package = sorted(name for name, path in known.items() if name != "harness"
                                 and "harness" in imports(path, known))
    assert (sorted(circles), through_the_package) == ([], [])


def test_every_imported_name_is_defined_where_it_is_imported_from():
    """A moved definition leaves no stale import behind (ruff checks one module at a time, not this)."""
    import importlib

    known = modules()
    missing = []
    for path in [*known.values(), *TESTS.rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("harness"):
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                            if not hasattr(module, alias.name) and f"{node.module}.{alias.name}" not in known]
    assert missing == []


def test_there_is_one_train_step():
    """Every path (sequential, traced, distributed, vectorized) trains through `trial.train.train_step`:
    it is the one function that opens a GradientTape."""
    opening = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                direct = [node for node in ast.walk(function) if isinstance(node, ast.Attribute)
                          and node.attr == "GradientTape"]
                nested = {id(node) for inner in ast.walk(function) if inner is not function
                          and isinstance(inner, ast.FunctionDef) for node in ast.walk(inner)}
                if any(id(node) not in nested for node in direct):
                    opening.append(f"{name}.{function.name}")
    assert opening == ["harness.trial.train.train_step"]


# Library modules whose tests run them through a program, and where those tests are. Every other library
# module `harness/LAYER/NAME.py` has its own `tests/LAYER/test_NAME.py`: "where is the test for X" has one answer.
TESTED_THROUGH = {
    "analysis.doctor_verdicts": "programs/test_doctor.py",
    "analysis.keras_probe": "programs/test_doctor.py",
    "analysis.script_edits": "programs/test_doctor.py",
    "analysis.gate_rules": "programs/test_gate.py",
    "analysis.gate_render": "programs/test_gate.py",
    "analysis.study_report": "programs/test_report_and_validate.py",
    "studies.background_load": "studies/test_study_runner.py",
    "studies.unit_of_work": "studies/test_study_runner.py",
    "trial.config": "trial/test_train.py",
    "trial.fingerprints": "trial/test_train.py",
    "trial.models": "trial/test_train.py",
    "trial.trainable": "trial/test_train.py",
    "tuning.objective_runs": "tuning/test_objective_reevaluation.py",
    "tuning.optuna_storage": "tuning/test_tuner.py",
}


def test_every_library_module_has_its_test_module():
    missing = []
    for name, path in modules().items():
        parts = name.split(".")
        if len(parts) != 3 or path.name == "__init__.py" or layer(name, path) == "common":
            continue
        own = TESTS / parts[1] / f"test_{parts[2]}.py"
        elsewhere = TESTS / TESTED_THROUGH.get(f"{parts[1]}.{parts[2]}", "-")
        if not own.exists() and not elsewhere.exists():
            missing.append(f"{name}: no {own.relative_to(TESTS.parent)}")
    stale = [key for key in TESTED_THROUGH if (TESTS / key.replace(".", "/test_", 1)).with_suffix(".py").exists()]
    assert missing == [] and stale == []
