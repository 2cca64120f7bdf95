"""The CI gate's rules: thresholds, the rules that judge a candidate study against a baseline, and
their verdicts (`python -m harness.gate` runs them; `gate_render` prints them).

Every statistical rule fails only when the candidate is worse beyond its
tolerance *and* the measured spread says so (a one-sided test at alpha):
ten noisy runs must not break a build by chance, nor hide a real regression.
"""


from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from harness.analysis import stats
from harness.errors import UsageError
from harness.studies.conditions import ALL, CONTROL, KERNELS, RESUME
from harness.studies.records import load_document

RULES = ("failures", "determinism", "accuracy", "variance", "speed", "overhead", "replay")
# Rules applied only when asked for (gate's --require, a rules file's "require" list): `replay` needs the `resume`
# condition, which the default study does not run.
OPT_IN_RULES = ("replay",)
# A timing rule's note where a side has one step measurement (a replica group's): no interval, so no verdict.
ONE_SAMPLE = "one sample a side, no interval: not judged"
# Defaults of every threshold; a rules file (JSON object) or a flag overrides each.
DEFAULT_THRESHOLDS = {
    "alpha": 0.05,                   # one-sided significance of the statistical rules
    "accuracy_tolerance": 0.01,      # test accuracy may drop this much (0.01 = 1 point)
    "loss_tolerance": 0.05,          # regression test loss may grow this share
    "variance_factor": 1.5,          # `all`'s SD may grow by this factor
    "max_slowdown": 0.25,            # steady-state step time may grow this share
    "max_determinism_overhead": 1.0,  # deterministic kernels may cost this share of step time
}
# What each threshold means, in its unit: gate --help and docs/gate.md say it.
THRESHOLD_MEANINGS = {
    "alpha": "one-sided significance level of the statistical rules, a probability (0.05: 5%)",
    "accuracy_tolerance": "how far the candidate's mean test accuracy may fall below the baseline's, a fraction "
                          "(0.01: 1 percentage point)",
    "loss_tolerance": "how much the candidate's mean test loss (regression) may grow, a share of the baseline's "
                      "(0.05: 5%)",
    "variance_factor": "how many times the baseline's `all` test-accuracy SD the candidate's may reach, a ratio "
                       "(1.5: half as much again)",
    "max_slowdown": "how much the steady-state step time may grow, a share of the baseline's (0.25: 25% slower)",
    "max_determinism_overhead": "how much deterministic kernels may add to the step time, a share (1.0: twice "
                                "as slow)",
}


@dataclasses.dataclass
class Verdict:
    rule: str
    condition: str
    baseline: str
    candidate: str
    threshold: str
    passed: bool | None  # None: not applicable (too few runs), says why in `detail`
    detail: str = ""

    @property
    def word(self) -> str:
        return {True: "pass", False: "FAIL", None: "skip"}[self.passed]


def thresholds_from(rules_file: str | None, overrides: dict[str, float | None],
                    skip: list[str], require: list[str] = ()) -> tuple[dict[str, float], set[str]]:
    """Thresholds and skipped rules: defaults, then the rules file, then flags. The opt-in rules are skipped
    unless required (`require`, or the rules file's "require" list)."""
    values, skipped, required = dict(DEFAULT_THRESHOLDS), set(skip), set(require)
    if rules_file:
        try:
            loaded = load_document(Path(rules_file).read_bytes(), rules_file)
        except FileNotFoundError:
            raise UsageError(f"{rules_file}: no such rules file") from None
        if not isinstance(loaded, dict):
            raise UsageError(f"{rules_file} must hold a JSON object of thresholds")
        skipped |= set(loaded.pop("skip", []))
        required |= set(loaded.pop("require", []))
        loaded.pop("calibrated_from", None)  # what a calibration measured (gate_calibration.py): for people
        unknown = set(loaded) - set(DEFAULT_THRESHOLDS)
        if unknown:
            raise UsageError(f"{rules_file} sets unknown thresholds {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(DEFAULT_THRESHOLDS)}")
        for name, value in loaded.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise UsageError(f"{rules_file}: {name} must be a number, got {value!r}")
            values[name] = float(value)
    values.update({k: v for k, v in overrides.items() if v is not None})
    bad_skip = skipped - set(RULES)
    if bad_skip:
        raise UsageError(f"unknown rule(s) to skip: {', '.join(sorted(bad_skip))}; rules are {', '.join(RULES)}")
    bad_require = required - set(OPT_IN_RULES)
    if bad_require:
        raise UsageError(f"unknown rule(s) to require: {', '.join(sorted(bad_require))}; the rules off by default "
                         f"are {', '.join(OPT_IN_RULES)}")
    skipped |= set(OPT_IN_RULES) - required
    for name, value in values.items():
        # A NaN threshold would make every comparison false, so every rule would pass.
        if not math.isfinite(value) or value < 0 or (name == "alpha" and not 0 < value < 1):
            raise UsageError(f"threshold {name} cannot be {value}")
    return values, skipped


NOT_COMPARED_CONFIG = ("replicas",)


def check_comparable(baseline: dict[str, Any], candidate: dict[str, Any], names: tuple[str, str]) -> list[str]:
    """Raises on summaries that cannot be compared; returns notes on differences worth knowing."""
    if baseline["benchmark"] != candidate["benchmark"]:
        raise UsageError(f"{names[0]} is benchmark {baseline['benchmark']!r} but {names[1]} is "
                         f"{candidate['benchmark']!r}; they cannot be compared")
    if baseline["primary_metric"] != candidate["primary_metric"]:
        raise UsageError(f"{names[0]} measures {baseline['primary_metric']} but {names[1]} measures "
                         f"{candidate['primary_metric']}; they cannot be compared")
    common = _common_conditions(baseline, candidate)
    if not common:
        raise UsageError(f"{names[0]} and {names[1]} share no condition "
                         f"({', '.join(_names(baseline))} vs {', '.join(_names(candidate))})")
    notes = []
    # Replicas change how many trials train together, not what a trial computes (a replica's bits are its trial's
    # alone): a study's summary.json says the flag, its trials.jsonl the groups they trained in.
    changed = sorted(k for k in set(baseline["config"]) | set(candidate["config"])
                     if k not in NOT_COMPARED_CONFIG and baseline["config"].get(k) != candidate["config"].get(k))
    if changed:
        notes.append("config differs in " + ", ".join(
            f"{k} ({baseline['config'].get(k)} -> {candidate['config'].get(k)})" for k in changed))
    for label, path in (("CPU", ("cpu", "model")), ("TensorFlow", ("tensorflow", "version"))):
        before, after = (_dig(s["environment"], path) for s in (baseline, candidate))
        if before and after and before != after:
            notes.append(f"{label} differs ({before} -> {after}): speed rules compare across machines")
    before, after = ([g.get("name") for g in s["environment"].get("gpus", [])] for s in (baseline, candidate))
    if before != after:
        notes.append(f"GPUs differ ({before or 'none'} -> {after or 'none'})")
    compared = {cand["name"] for _, cand in common}
    missing = [n for n in _names(baseline) if n not in compared]
    if missing:
        notes.append(f"not in the candidate, so not compared: {', '.join(missing)}")
    return notes


def evaluate(baseline: dict[str, Any], candidate: dict[str, Any], thresholds: dict[str, float],
             skipped: set[str] = frozenset(OPT_IN_RULES)) -> list[Verdict]:
    """Every rule's verdict, in table order (the opt-in rules only where `skipped`, from thresholds_from, leaves
    them in)."""
    common = _common_conditions(baseline, candidate)
    verdicts: list[Verdict] = []
    for rule, check in (("failures", _failures), ("determinism", _determinism), ("accuracy", _accuracy),
                        ("variance", _variance), ("speed", _speed), ("overhead", _overhead), ("replay", _replay)):
        if rule not in skipped:
            verdicts.extend(check(common, baseline, candidate, thresholds))
    return verdicts


Pairs = list[tuple[dict[str, Any], dict[str, Any]]]


def _failures(common: Pairs, *_) -> list[Verdict]:
    """A condition whose trials newly fail (NaN loss, an op without a deterministic kernel) regresses."""
    out = []
    for base, cand in common:
        out.append(Verdict("failures", cand["name"], _failed_text(base), _failed_text(cand),
                           f"<= {base['n_failed']} failed", cand["n_failed"] <= base["n_failed"],
                           ", ".join(f"{k} x{v}" for k, v in cand["failures"].items())))
    return out


def _determinism(common: Pairs, baseline: dict[str, Any], candidate: dict[str, Any], __) -> list[Verdict]:
    """Conditions that must repeat bit for bit, and variants that matched control's bits, still do.
    Without control the candidate shows nothing about determinism, and without a kernels condition the baseline
    has it shows less than the baseline did: each fails, named (a study gated against itself never does)."""
    out = []
    for name in (CONTROL, KERNELS):
        if name not in _names(candidate) and (name == CONTROL or name in _names(baseline)):
            out.append(Verdict("determinism", name, "-", "not run", "1 weight hash", False,
                               f"the candidate has no {name} condition; run it, or --skip=determinism"))
    for base, cand in common:
        if cand["expects_identical_repeats"]:
            passed = cand["bitwise_reproducible"]
            out.append(Verdict("determinism", cand["name"], _hashes_text(base), _hashes_text(cand),
                               "1 weight hash", passed,
                               "" if passed is not None else "fewer than 2 ok runs"))
        if cand["name"] != CONTROL and base.get("matches_control_bitwise"):
            out.append(Verdict("determinism", f"{cand['name']} = control", "same bits",
                               _match_text(cand["matches_control_bitwise"]), "same bits as control",
                               cand["matches_control_bitwise"]))
    return out


def _replay(_, baseline: dict[str, Any], candidate: dict[str, Any], __) -> list[Verdict]:
    """Checkpoints still replay (required only): every run of the candidate's `resume` condition, resumed from its
    checkpoint in a fresh process, ends at the uninterrupted run's bits and at control's."""
    row = {r["name"]: r for r in candidate["conditions"]}.get(RESUME)
    before = ({r["name"]: r for r in baseline["conditions"]}.get(RESUME) or {}).get("restart_replay")
    was = f"{before['replayed']}/{before['runs']} replay" if before else "-"
    wanted = "every resumed run replays"
    if not row:
        return [Verdict("replay", RESUME, was, "not run", wanted, False,
                        "the candidate has no resume condition; run it (--conditions=...,resume)")]
    replay = row.get("restart_replay")
    if not replay:
        return [Verdict("replay", RESUME, was, "no ok runs", wanted, False, "no resumed run finished")]
    passed = replay["replayed"] == replay["runs"] and row.get("matches_control_bitwise") is not False
    detail = "" if passed else (replay.get("message") or "its final weights differ from control's")
    return [Verdict("replay", RESUME, was, f"{replay['replayed']}/{replay['runs']} replay", wanted, passed, detail)]


def _accuracy(common: Pairs, baseline: dict[str, Any], _, thresholds: dict[str, float]) -> list[Verdict]:
    """Welch's one-sided test: is the candidate worse than the baseline by more than the tolerance?"""
    metric = baseline["primary_metric"]
    higher_is_better = stats.higher_is_better(metric)
    out = []
    for base, cand in common:
        b, c = base[metric], cand[metric]
        if not b or not c:
            continue
        if higher_is_better:
            tolerance = thresholds["accuracy_tolerance"]
            # Shift the baseline down by the tolerance: "worse" now means worse by more than it.
            worse_by, limit_text = b["mean"] - c["mean"], f"drop <= {tolerance * 100:.2f} pt"
            p = _welch_less(c, b, b["mean"] - tolerance)
        else:
            tolerance = thresholds["loss_tolerance"] * b["mean"]
            worse_by, limit_text = c["mean"] - b["mean"], f"rise <= {thresholds['loss_tolerance']:.0%}"
            p = _welch_less(_negated(c), _negated(b), -(b["mean"] + tolerance))
        failed = p < thresholds["alpha"]
        out.append(Verdict("accuracy", cand["name"], _mean_text(b, metric), _mean_text(c, metric),
                           limit_text, not failed,
                           f"{_change_text(worse_by, metric)}, p={p:.3g}"))
    return out


def _welch_less(candidate: dict[str, Any], baseline: dict[str, Any], shifted_mean: float) -> float:
    """One-sided p-value of "candidate mean < shifted_mean" (Welch, unequal variances)."""
    from scipy import stats as scipy_stats

    if candidate["sd"] == 0 and baseline["sd"] == 0:
        # Bitwise-identical runs on both sides: the difference is exact, not estimated.
        return 0.0 if candidate["mean"] < shifted_mean else 1.0
    result = scipy_stats.ttest_ind_from_stats(
        candidate["mean"], candidate["sd"], candidate["n"], shifted_mean, baseline["sd"], baseline["n"],
        equal_var=False, alternative="less")
    return float(result.pvalue) if math.isfinite(result.pvalue) else 1.0


def _negated(described: dict[str, Any]) -> dict[str, Any]:
    return {**described, "mean": -described["mean"]}


def _variance(common: Pairs, baseline: dict[str, Any], _, thresholds: dict[str, float]) -> list[Verdict]:
    """F-test, one-sided: has `all`'s SD grown beyond the allowed factor?"""
    from scipy import stats as scipy_stats

    metric = baseline["primary_metric"]
    factor = thresholds["variance_factor"]
    for base, cand in common:
        if cand["name"] != ALL or not base[metric] or not cand[metric]:
            continue
        b, c = base[metric], cand[metric]
        ratio = c["sd"] / b["sd"] if b["sd"] else (math.inf if c["sd"] else 1.0)
        if c["n"] < 2 or b["n"] < 2:
            return [Verdict("variance", ALL, _sd_text(b, metric), _sd_text(c, metric), f"SD <= {factor:g}x",
                            None, "fewer than 2 ok runs")]
        if b["sd"] == 0:
            p = 0.0 if c["sd"] > 0 else 1.0
        else:
            f_value = (c["sd"] / (factor * b["sd"])) ** 2
            p = float(scipy_stats.f.sf(f_value, c["n"] - 1, b["n"] - 1))
        return [Verdict("variance", ALL, _sd_text(b, metric), _sd_text(c, metric), f"SD <= {factor:g}x",
                        p >= thresholds["alpha"], f"{ratio:.2f}x, p={p:.3g}")]
    return []


def _speed(common: Pairs, _, __, thresholds: dict[str, float]) -> list[Verdict]:
    """Steady-state step time: the candidate/baseline ratio of the trials' steps, with a Welch interval."""
    limit = 1.0 + thresholds["max_slowdown"]
    out = []
    for base, cand in common:
        if cand["name"] not in (CONTROL, KERNELS) or not base["step_ms"] or not cand["step_ms"]:
            continue
        ratio = stats.step_time_ratio(cand["step_ms"], base["step_ms"])
        # Fails only when slower beyond the limit even at the interval's low end. Without an interval (one
        # step measurement on a side: a replica group's) a timing is one noisy sample on a machine whose
        # speed moves 2-3x: not judged, rather than failed on noise (a study against itself did fail so).
        passed = ratio["ci95"][0] <= limit if ratio["ci95"] else None
        out.append(Verdict("speed", cand["name"], f"{base['step_ms_median']:.3f} ms",
                           f"{cand['step_ms_median']:.3f} ms", f"<= {limit:.2f}x", passed,
                           _ratio_text(ratio) if ratio["ci95"] else
                           f"{ratio['ratio']:.2f}x, {too_few_text(len(base['step_ms']), len(cand['step_ms']))}"))
    return out


def _overhead(common: Pairs, baseline: dict[str, Any], candidate: dict[str, Any],
              thresholds: dict[str, float]) -> list[Verdict]:
    """Deterministic kernels' cost in the candidate: determinism_cost, op determinism on over off timed in
    units of interleaved blocks, with its interval over the units. Fails only when the whole interval lies beyond
    the bound: a loaded machine widens the interval, it does not fail the build (a study against itself did fail so
    when the cost came from control and kernels timed minutes apart)."""
    bound = thresholds["max_determinism_overhead"]
    cost = candidate.get("determinism_cost")
    if not cost:
        if any(cand["name"] == KERNELS for _, cand in common):
            return [Verdict("overhead", "kernels vs control", "-", "-", f"<= {bound:+.0%}", None,
                            "no interleaved cost measurement in the candidate (kernels and control were timed "
                            "apart): not judged")]
        return []
    base_cost = baseline.get("determinism_cost") or {}
    base_text = f"{base_cost['ratio'] - 1:+.1%}" if base_cost.get("ratio") else "-"
    if not cost.get("ratio"):
        reason = (cost["components"].get("op_determinism") or {}).get("reason", "not measured")
        return [Verdict("overhead", "kernels vs control", base_text, "-", f"<= {bound:+.0%}", None,
                        f"not measured: {reason.rstrip('.')}")]
    overhead = cost["ratio"] - 1
    if not cost["ci95"]:
        return [Verdict("overhead", "kernels vs control", base_text, f"{overhead:+.1%}", f"<= {bound:+.0%}",
                        None, ONE_SAMPLE)]
    low, high = cost["ci95"][0] - 1, cost["ci95"][1] - 1
    return [Verdict("overhead", "kernels vs control", base_text, f"{overhead:+.1%}", f"<= {bound:+.0%}",
                    low <= bound, f"95% CI [{low:+.1%}, {high:+.1%}], {stats.units_text(cost)}")]


def too_few_text(base: int, cand: int) -> str:
    """Why a speed ratio has no interval: one step measurement a side (a replica group's), or fewer than the 3 a
    side the interval needs."""
    if base == cand == 1:
        return ONE_SAMPLE
    return f"{base} and {cand} step measurements, fewer than 3 a side: no interval, not judged"


def _common_conditions(baseline: dict[str, Any], candidate: dict[str, Any]) -> Pairs:
    theirs = {row["name"]: row for row in candidate["conditions"]}
    return [(row, theirs[row["name"]]) for row in baseline["conditions"] if row["name"] in theirs]


def _names(summary: dict[str, Any]) -> list[str]:
    return [row["name"] for row in summary["conditions"]]


def _dig(value: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _metric_text(value: float, metric: str) -> str:
    return f"{value * 100:.2f} pt" if stats.higher_is_better(metric) else f"{value:.4g}"


def _change_text(worse_by: float, metric: str) -> str:
    if worse_by == 0:
        return "no change"
    return f"{'worse' if worse_by > 0 else 'better'} by {_metric_text(abs(worse_by), metric)}"


def _mean_text(described: dict[str, Any], metric: str) -> str:
    scale = stats.display_scale(metric)
    return f"{described['mean'] * scale:.4g} ± {described['sd'] * scale:.2g} (n={described['n']})"


def _sd_text(described: dict[str, Any], metric: str) -> str:
    scale = stats.display_scale(metric)
    return f"SD {described['sd'] * scale:.3g} (n={described['n']})"


def _failed_text(row: dict[str, Any]) -> str:
    return f"{row['n_failed']}/{row['n_ok'] + row['n_failed']} failed"


def _hashes_text(row: dict[str, Any]) -> str:
    return f"{row['unique_weight_hashes']} hash(es)/{row['n_ok']}"


def _match_text(matches: bool | None) -> str:
    return {True: "same bits", False: "different bits", None: "no ok runs"}[matches]


def _ratio_text(ratio: dict[str, Any]) -> str:
    if not ratio["ci95"]:
        return f"{ratio['ratio']:.2f}x"
    return f"{ratio['ratio']:.2f}x, 95% CI [{ratio['ci95'][0]:.2f}, {ratio['ci95'][1]:.2f}]"
