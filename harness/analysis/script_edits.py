"""The doctor's fixes as edits of the user's script: text that runs as printed, where it is printed.

A fix is a list of edits, each an insertion before a line (with that line's
indentation) or a replacement within one line. `fix_text` prints them, and
`apply` makes exactly that change to a copy of the script, which is what
`harness.doctor --verify` runs: a fix that would not run as printed (a name
the script never imported) fails there, not in the user's hands.

The seeding call names Keras the way the script can reach it: `keras` where
the script imports it (`import keras`, `from tensorflow import keras`), else
`tf.keras` where it imports TensorFlow as `tf`, else it imports keras itself.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

# The seed every fix uses: any fixed number makes the runs repeat.
FIX_SEED = 0
WHY = "seeds Python's random, NumPy, TensorFlow and Keras, before anything random happens"


def _parse(script: Path) -> tuple[ast.Module, list[str]]:
    text = script.read_text()
    return ast.parse(text), text.splitlines()


def keras_name(tree: ast.Module, before_line: int | None = None) -> str | None:
    """How the script's top-level imports (above `before_line`) reach Keras: "keras", "tf.keras", ...; None
    where they do not."""
    bound: dict[str, str] = {}
    for node in tree.body:
        if before_line is not None and node.lineno >= before_line:
            break
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                module = alias.name if alias.asname else alias.name.split(".")[0]
                bound[name] = module
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for name, module in bound.items():
        if module in ("keras", "tensorflow.keras"):
            return name
    for name, module in bound.items():
        if module == "tensorflow":
            return f"{name}.keras"
    return None


def top_insertion_line(tree: ast.Module) -> int:
    """The line before which a call goes "at the top": after the docstring, `__future__` and the imports that
    open the script, before its first other statement."""
    line = None
    for index, node in enumerate(tree.body):
        docstring = index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
            and isinstance(node.value.value, str)
        if docstring or isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        line = node.lineno
        if getattr(node, "decorator_list", None):
            line = min(d.lineno for d in node.decorator_list)
        break
    if line is None:  # nothing but imports: after the last line
        line = (tree.body[-1].end_lineno + 1) if tree.body else 1
    return line


def seeding_at_top(script: Path) -> list[dict[str, Any]]:
    """`keras.utils.set_random_seed(0)` after the script's opening imports, with an import of keras where the
    script has no name for it there."""
    tree, _ = _parse(script)
    line = top_insertion_line(tree)
    name = keras_name(tree, line)
    text = [] if name else ["import keras"]
    text.append(f"{name or 'keras'}.utils.set_random_seed({FIX_SEED})  # {WHY}")
    return [{"line": line, "insert": text, "indent": ""}]


def op_determinism_at_top(script: Path) -> list[dict[str, Any]]:
    """`tf.config.experimental.enable_op_determinism()` after the script's opening imports."""
    tree, _ = _parse(script)
    line = top_insertion_line(tree)
    name = tensorflow_name(tree, line)
    text = [] if name else ["import tensorflow as tf"]
    text.append(f"{name or 'tf'}.config.experimental.enable_op_determinism()  # with the seeding the script has")
    return [{"line": line, "insert": text, "indent": ""}]


def tensorflow_name(tree: ast.Module, before_line: int | None = None) -> str | None:
    """The name the script's top-level imports give TensorFlow ("tf"), or None."""
    for node in tree.body:
        if before_line is not None and node.lineno >= before_line:
            break
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorflow":
                    return alias.asname or "tensorflow"
    return None


def seed_argument_fix(script: Path, line: int, call: str) -> dict[str, Any] | None:
    """`np.random.default_rng()` at `line` made with a seed: `np.random.default_rng(0)`."""
    _, lines = _parse(script)
    if not 1 <= line <= len(lines) or f"{call}()" not in lines[line - 1]:
        return None
    return {"line": line, "replace": [f"{call}()", f"{call}({FIX_SEED})"]}


def seeding_in_function(script: Path, function_line: int, seed_argument: str | None) -> list[dict[str, Any]]:
    """`keras.utils.set_random_seed(seed)` as the first statement of the function defined at `function_line`
    (after its docstring), with the function's own `seed` argument where it has one."""
    tree, lines = _parse(script)
    function = _function_at(tree, function_line)
    if function is None:
        return []
    body = function.body
    first = body[1] if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(
        getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str) else body[0]
    indent = lines[first.lineno - 1][:len(lines[first.lineno - 1]) - len(lines[first.lineno - 1].lstrip())]
    name = keras_name(tree) or "keras"
    argument = seed_argument or str(FIX_SEED)
    edits = []
    if keras_name(tree) is None:
        edits += seeding_imports(tree)
    edits.append({"line": first.lineno, "insert": [f"{name}.utils.set_random_seed({argument})"], "indent": indent})
    return edits


def _function_at(tree: ast.Module, line: int) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function whose code starts at `line` (its `def`, or its first decorator: a code object's first line)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if line in (node.lineno, min([node.lineno, *(d.lineno for d in node.decorator_list)])):
                return node
    return None


def seeding_imports(tree: ast.Module) -> list[dict[str, Any]]:
    return [{"line": top_insertion_line(tree), "insert": ["import keras"], "indent": ""}]


def fix_text(edits: list[dict[str, Any]], script_name: str) -> str:
    """The edits as the doctor prints them: where, then the lines, indented as they go into the script."""
    said = []
    for edit in edits:
        if "replace" in edit:
            old, new = edit["replace"]
            said.append(f"at {script_name}:{edit['line']}, {new} in place of {old}")
        else:
            lines = "\n".join(f"    {edit['indent']}{text}" for text in edit["insert"])
            said.append(f"before {script_name}:{edit['line']}, add\n{lines}")
    return "\n".join(said)


def apply(script: Path, edits: list[dict[str, Any]], copy: Path) -> Path:
    """Writes the script with the edits made (insertions shift no other edit: applied bottom up) to `copy`."""
    lines = script.read_text().splitlines(keepends=True)
    for edit in sorted(edits, key=lambda e: (e["line"], "replace" in e), reverse=True):
        index = edit["line"] - 1
        if "replace" in edit:
            old, new = edit["replace"]
            lines[index] = lines[index].replace(old, new, 1)
        else:
            lines[index:index] = [f"{edit['indent']}{text}\n" for text in edit["insert"]]
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text("".join(lines))
    return copy


REPLAYING_BACKUP = "ReplayingBackupAndRestore"


def backup_with_generators(script: Path) -> list[dict[str, Any]]:
    """The fix for a BackupAndRestore that leaves the random generators' states out (Keras's saves weights and
    optimizer only, so a resumed fit draws other dropout masks): a subclass that backs them up too, defined after
    the script's opening imports, in place of each BackupAndRestore the script makes. [] where it makes none."""
    tree, lines = _parse(script)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and node.lineno == node.func.end_lineno
             and getattr(node.func, "attr", getattr(node.func, "id", None)) == "BackupAndRestore"]
    if not calls:
        return []
    line = top_insertion_line(tree)
    name = keras_name(tree, line)
    edits: list[dict[str, Any]] = [] if name else [{"line": line, "insert": ["import keras"], "indent": ""}]
    edits.append({"line": line, "indent": "", "insert": [
        f"class {REPLAYING_BACKUP}({name or 'keras'}.callbacks.BackupAndRestore):",
        '    """BackupAndRestore that also backs up every random generator\'s state (a Dropout layer\'s masks), which',
        '    Keras\'s own leaves out: a resumed fit then draws what the uninterrupted one would have drawn."""',
        "",
        "    def _generator_states(self):",
        '        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]',
        "",
        "    def _save_model(self):",
        "        import json",
        "",
        "        super()._save_model()",
        '        with open(f"{self.backup_dir}/seed_generator_states.json", "w") as file:',
        "            json.dump([v.numpy().tolist() for v in self._generator_states()], file)",
        "",
        "    def _load_model(self):",
        "        import json",
        "",
        "        super()._load_model()",
        "        try:",
        '            with open(f"{self.backup_dir}/seed_generator_states.json") as file:',
        "                states = json.load(file)",
        "        except FileNotFoundError:  # nothing backed up yet: a fit from the start",
        "            return",
        "        for variable, state in zip(self._generator_states(), states):",
        "            variable.assign(state)",
        "", ""]})
    for call in calls:
        old = lines[call.lineno - 1][call.func.col_offset:call.func.end_col_offset]
        edits.append({"line": call.lineno, "replace": [f"{old}(", f"{REPLAYING_BACKUP}("]})
    return edits
