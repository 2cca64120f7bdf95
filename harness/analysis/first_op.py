"""The first op where two runs part, from their op traces (`trial/op_trace.py`), and what causes it.

`harness.diverge` names the step and layer first (`divergence.py`); then it runs each side again with every
op's tensors fingerprinted through that step, and `first_op` compares the two. The ops are aligned by type and
name (a name with its `_N` counters dropped: graph op names are the same for the same code, up to the numbers
Keras appends when it builds a model twice in one process); ops with no partner are in one run's graph only
(a conditional branch: the model's code ran differently). Then, at the first step where any aligned op's
tensors differ, the first op in creation order (a topological order of the step) whose inputs are equal in
both runs and whose output differs. The runtime graphs (what each run really ran, after Grappler and XLA)
say which of the step's ops ran inside an XLA cluster in one run only.

`cause_of` maps what was found to a cause the harness knows: XLA fusion, an unseeded random op, a kernel known
to be nondeterministic on GPUs (`platform/known_ops.py`), or an environment variable run B sets (oneDNN,
thread count), with the remedy `diverge --verify` can apply, where one exists.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError
from harness.platform.known_ops import ENVIRONMENT_CAUSES, KNOWN_OPS, RANDOM_OP_TYPES

# How many one-run-only ops a verdict lists by name.
LISTED = 5
# The remedies --verify can apply, and how a sentence names each.
REMEDIES = {"xla off": "XLA off in both runs (TF_XLA_FLAGS empty)",
            "op determinism": "op determinism on in both runs (--determinism=on)",
            "same environment": "run B without the environment variables that name the cause"}


def load_op_trace(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {key: data[key] for key in data.files}
    except (OSError, ValueError):
        raise UsageError(f"{path} is not an op trace written by harness.diverge") from None
    return {**json.loads(str(loaded["op_table"])), "op_steps": loaded["op_steps"],
            "runtime_ran": [bool(r) for r in loaded["runtime_ran"]],
            "xla_clusters": [str(c) for c in loaded["xla_clusters"]]}


def _key(op_type: str, name: str) -> tuple[str, str]:
    return op_type, re.sub(r"_\d+(?=/|$)", "", name)


def first_op(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Where two op traces part: ops in one graph only, ops that ran in an XLA cluster in one run only, and
    the first op whose inputs are equal and whose output differs (at the first step where any op differs)."""
    keys_a = [_key(t, n) for t, n in zip(a["types"], a["names"], strict=True)]
    keys_b = [_key(t, n) for t, n in zip(b["types"], b["names"], strict=True)]
    pairs, a_only, b_only = [], [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs += zip(range(i1, i2), range(j1, j2), strict=True)
        else:
            a_only += range(i1, i2)
            b_only += range(j1, j2)
    steps = min(len(a["op_steps"]), len(b["op_steps"]))
    found: dict[str, Any] = {
        "steps_captured": steps, "ops": {"a": len(a["names"]), "b": len(b["names"])},
        "a_only": [_op(a, i) for i in a_only], "b_only": [_op(b, j) for j in b_only],
        "xla_clusters": {"a": len(a["xla_clusters"]), "b": len(b["xla_clusters"])},
        "in_xla_only_in": None, "in_xla": [],
        "step": None, "op": None, "type": None, "inputs_equal": None, "one_run_only": None}
    # The step's ops the runtime ran in one run and not in the other, where that other ran XLA clusters.
    for side, (ran, cluster_run) in {"b": ((0, 1), b), "a": ((1, 0), a)}.items():
        missing = [p for p in pairs if _ran(a, b, p, ran[0]) and not _ran(a, b, p, ran[1])]
        if missing and cluster_run["xla_clusters"]:
            found["in_xla_only_in"], found["in_xla"] = side, [a["names"][i] for i, _ in missing]
            break
    if a_only or b_only:
        # The code differs: name the op there that makes new values (a random op), else the first.
        side, trace, extra = ("b", b, b_only) if b_only else ("a", a, a_only)
        named = next((i for i in extra if trace["types"][i] in RANDOM_OP_TYPES), extra[0])
        return {**found, "step": 0, "op": trace["names"][named], "type": trace["types"][named],
                "one_run_only": side}
    for step in range(steps):
        fa, fb = a["op_steps"][step], b["op_steps"][step]
        for i, j in pairs:
            outputs_equal = _same(fa, a["outputs"][i], fb, b["outputs"][j])
            if not outputs_equal and _same(fa, a["inputs"][i], fb, b["inputs"][j]):
                return {**found, "step": step, "op": a["names"][i], "type": a["types"][i], "inputs_equal": True}
        first = next(((i, j) for i, j in pairs if not _same(fa, a["outputs"][i], fb, b["outputs"][j])), None)
        if first is not None:  # every differing op has differing inputs: a tensor no op made (an argument)
            return {**found, "step": step, "op": a["names"][first[0]], "type": a["types"][first[0]],
                    "inputs_equal": False}
    return found


def _op(trace: dict[str, Any], i: int) -> dict[str, str]:
    return {"name": trace["names"][i], "type": trace["types"][i]}


def _ran(a: dict[str, Any], b: dict[str, Any], pair: tuple[int, int], side: int) -> bool:
    trace = (a, b)[side]
    return bool(trace["runtime_ran"][pair[side]]) if trace["runtime_ran"] else True


def _same(fa: np.ndarray, ia: list[int], fb: np.ndarray, ib: list[int]) -> bool:
    return len(ia) == len(ib) and all(np.array_equal(fa[x], fb[y]) for x, y in zip(ia, ib, strict=True))


def cause_of(found: dict[str, Any], b_env: dict[str, str], contexts: list[Any] | None = None) -> dict[str, Any]:
    """The cause the harness knows for `first_op`'s finding, and the remedy --verify can apply (or None)."""
    env_causes = {ENVIRONMENT_CAUSES[name] for name in b_env if name in ENVIRONMENT_CAUSES}
    if found["in_xla"]:
        return {"cause": "XLA fusion", "remedy": "xla off"}
    op_type = found["type"]
    side = found["one_run_only"]
    only = (f"code that only run {side.upper()} runs (a conditional branch"
            + (f"; run B sets {', '.join(f'{k}={v}' for k, v in b_env.items())})" if b_env else ")")) if side else ""
    if op_type in RANDOM_OP_TYPES:
        return {"cause": f"a random op in {only}" if side else "a random op with no seed", "remedy": None}
    if side:
        return {"cause": only, "remedy": None}
    if op_type in KNOWN_OPS:
        return {"cause": f"a kernel nondeterministic on GPUs ({KNOWN_OPS[op_type].what})", "remedy": "op determinism"}
    if env_causes:
        return {"cause": " and ".join(sorted(env_causes)), "remedy": "same environment"}
    a, b = (contexts or [None, None])[:2]
    if a and b:
        differing = [what for key, what in (("onednn", "oneDNN"), ("threads", "thread count"))
                     if a.get(key) != b.get(key)]
        if differing:
            return {"cause": " and ".join(differing), "remedy": None}
    return {"cause": None, "remedy": None}


def format_first_op(found: dict[str, Any]) -> str:
    """`first_op`'s verdict and its cause in sentences."""
    lines = []
    for side, other in (("b", "a"), ("a", "b")):
        extra = found[f"{side}_only"]
        if extra:
            listed = ", ".join(f"`{op['name']}` ({op['type']})" for op in extra[:LISTED])
            more = f" and {len(extra) - LISTED} more" if len(extra) > LISTED else ""
            lines.append(f"Run {side.upper()}'s graph has {len(extra)} ops run {other.upper()}'s does not (its code "
                         f"ran differently: a conditional branch): {listed}{more}.")
    if found["in_xla"]:
        side = found["in_xla_only_in"]
        other = "a" if side == "b" else "b"
        clusters = found["xla_clusters"][side]
        lines.append(f"Run {side.upper()}'s graph differs: {len(found['in_xla'])} ops of run {other.upper()}'s train "
                     f"step ran inside XLA cluster(s) in run {side.upper()} ({clusters} cluster(s) in its train loop)"
                     + (f", `{found['op']}` among them." if found["op"] in found["in_xla"] else
                        f", e.g. {', '.join(f'`{n}`' for n in found['in_xla'][:3])}."))
    if found["op"] is None:
        if not lines:
            lines.append(f"The op-level runs agree: every op's inputs and outputs are bitwise equal in all "
                         f"{found['steps_captured']} steps, and both ran the same graph: this time the runs did not "
                         "part (a source that differs run to run need not part every pair of runs).")
    elif found["one_run_only"]:
        lines.append(f"The first op of those that makes new values: `{found['op']}` ({found['type']}), in run "
                     f"{found['one_run_only'].upper()} only.")
    elif found["type"] == "Placeholder":
        lines.append(f"The first tensor that differs, at step {found['step']}, is one the train step is given, "
                     f"`{found['op']}`: the runs part before the step (the input pipeline, or the loop that feeds "
                     "the step).")
    elif found["inputs_equal"]:
        lines.append(f"The first op whose inputs are equal and whose output differs, at step {found['step']}: "
                     f"`{found['op']}` ({found['type']}).")
    else:
        lines.append(f"At step {found['step']} the first op whose output differs, `{found['op']}` ({found['type']}), "
                     "has inputs that differ too: a tensor the step is given (its batch) differs.")
    cause = found.get("cause")
    if cause:
        remedy = found.get("remedy")
        lines.append(f"Cause: {cause}." + (f" Remedy: {REMEDIES[remedy]} (--verify tries it)." if remedy else
                                           " The harness has no remedy to apply for it."))
    return "\n".join(lines)
