"""What `harness.reeval` says of a tuned trial re-run over seeds: the score's distribution set against the
score the tuner reported (its percentile, the expected drop), and, for the K best trials re-run over the same
seeds (`--top_k`), whether the tuner's pick still wins. Each with its findings in words.

The score is a metric of the harness's own trials (validation_accuracy, ...) or, for a user's own objective,
the value it returns (`OBJECTIVE_VALUE`), better higher or lower as its study's direction says.
"""

from __future__ import annotations

from typing import Any

from harness.analysis import stats
from harness.errors import UsageError
from harness.tuning import hyperparameters, seed_scores

# The score of a re-run user objective: whatever it returns.
OBJECTIVE_VALUE = "objective"


def comparison_block(found: dict[str, Any], metric: str, values: list[float | None], base_seed: int,
                     reused: int, *, higher: bool | None = None, label: str | None = None,
                     seeds: str | None = None, failures: list[str] | None = None) -> dict[str, Any]:
    """The tuned trial's re-runs against its tuned score. `higher` and `label` (what the score is, in
    words) for a score whose name does not say; `seeds`: how the runs were seeded, in words; `failures`:
    what each failed run said (`seed S: message`)."""
    ok = [v for v in values if v is not None]
    higher = stats.higher_is_better(metric) if higher is None else higher
    distribution = seed_scores.describe_scores(values)
    block = {"source": found["source"], "hyperparameters": found["params"], "metric": metric,
             "label": label or metric, "seeds_are": seeds or "fresh seeds" if not reused else seeds or "seeds",
             "higher_is_better": higher, "tuned_score_is": found["tuned_score_is"],
             "base_seed": base_seed, "tuning_seeds_reused": reused, "n_seeds": len(values),
             "n_failed": len(values) - len(ok), "failures": failures or [], "distribution": distribution,
             **seed_scores.against_tuned_score(ok, found["tuned_score"], metric, higher=higher)}
    block["findings"] = comparison_findings(block)
    return block


def comparison_findings(block: dict[str, Any]) -> list[str]:
    metric, d = block["metric"], block["distribution"]
    label = block.get("label", metric)
    failed = _failures_sentence(block)
    if not d:
        return [f"No re-evaluation run gave a {label}.", *([failed] if failed else [])]
    fmt = lambda v: stats.format_score(v, metric)  # noqa: E731
    amount = lambda v: stats.format_amount(v, metric)  # noqa: E731
    ci = d["mean_ci95"]
    sd_ci = d["sd_ci95"]
    spread = f"SD {amount(d['sd'])}" + (f" (95% CI {fmt(sd_ci[0])} to {fmt(sd_ci[1])})" if sd_ci else "")
    mean = fmt(d["mean"]) + (f" on average (95% CI {fmt(ci[0])} to {fmt(ci[1])})" if ci else "")
    seeds = block.get("seeds_are") or ("fresh seeds" if not block["tuning_seeds_reused"] else "seeds")
    said = [f"Over {d['n']} {seeds}, {label} is {mean}, {spread}, from {fmt(d['min'])} to {fmt(d['max'])}."]
    if failed:
        said.append(failed)
    if block["tuned_score"] is None:
        if d["n"] > 1 and d["sd"] == 0:
            said.append(f"All {d['n']} runs gave the same score: it does not change with the seed here.")
        said.append("No tuned score was given (--tuned_score), so there is nothing to set the runs against.")
        return said
    if d["n"] > 1 and d["sd"] == 0:
        return [*said, _seed_free_sentence(block, fmt, amount)]
    share, drop, drop_ci = block["better_than_share"], block["expected_drop"], block["expected_drop_ci95"]
    said.append(f"The tuner reported {fmt(block['tuned_score'])} ({block['tuned_score_is']}): better than "
                f"{share:.0%} of the re-evaluation runs (its percentile among them).")
    if drop_ci is None:
        said.append("Too few runs succeeded for an interval on the expected drop.")
    elif drop_ci[0] > 0:
        said.append(f"Expect {amount(drop)} worse on re-running (95% CI {fmt(drop_ci[0])} to {fmt(drop_ci[1])}): "
                    "the tuned score was partly a lucky seed (the winner's curse).")
    elif drop_ci[1] < 0:
        said.append(f"Re-running does better than the tuner reported, by {amount(-drop)} (95% CI "
                    f"{fmt(-drop_ci[1])} to {fmt(-drop_ci[0])}).")
    else:
        said.append("The tuned score is within the re-evaluation's uncertainty of its mean: no sign of a lucky "
                    "seed at this N.")
    if block["tuning_seeds_reused"]:
        said.append(f"The first {block['tuning_seeds_reused']} seeds are the tuner's own (--seed equals the "
                    "tuning seed); fresh seeds give an unbiased re-evaluation.")
    return said


def _failures_sentence(block: dict[str, Any]) -> str | None:
    """How many runs failed and what the first said: a trial the tuner completed that fails on some seeds is
    itself a finding, one its single tuned value does not show."""
    n_failed, n = block["n_failed"], block["n_seeds"]
    if not n_failed:
        return None
    first = f" (first, {block['failures'][0]})" if block.get("failures") else ""
    return (f"{n_failed} of {n} runs ({n_failed / n:.0%}) failed{first} and are left out: with these parameters "
            "the run fails on some seeds, which the study's one value does not show.")


def _seed_free_sentence(block: dict[str, Any], fmt: Any, amount: Any) -> str:
    """Every run gave the same score: the seed does not move it, so the tuned score was no lucky seed; a
    tuned score that differs from it came from something else than the seed."""
    d, tuned = block["distribution"], block["tuned_score"]
    if tuned == d["mean"]:
        return (f"All {d['n']} runs gave {fmt(tuned)}, the tuned score: it does not change with the seed, so the "
                "tuned score was no lucky seed (expected drop 0).")
    return (f"All {d['n']} runs gave {fmt(d['mean'])}, where the tuner reported {fmt(tuned)} "
            f"({block['tuned_score_is']}): the score does not change with the seed here, so the difference of "
            f"{amount(abs(tuned - d['mean']))} is no seed luck; something else differed when the tuner ran "
            "(the code, the data, library versions or the machine).")


def top_k_block(trials: list[dict[str, Any]], metric: str, higher: bool) -> dict[str, Any]:
    """The K best trials re-run over the same seeds (`trials`, the tuner's pick first, each with `trial`,
    `params`, `tuned_score` and its `scores` seed by seed): each one's distribution, the pick against each
    other one over the paired seeds, and whether re-running would have chosen another."""
    entries = [{**t, "distribution": seed_scores.describe_scores(t["scores"])} for t in trials]
    pick = entries[0]
    pairs = []
    for other in entries[1:]:
        name_a, name_b = f"trial {pick['trial']}", f"trial {other['trial']}"
        try:
            verdict = seed_scores.paired_comparison(pick["scores"], other["scores"], metric, higher=higher)
        except UsageError:  # no seed gave both a score
            pairs.append({"a": name_a, "b": name_b, "n_pairs": 0,
                          "sentence": f"{name_a} and {name_b} have no seed that gave both a score: no comparison."})
            continue
        pairs.append({"a": name_a, "b": name_b, **verdict,
                      "sentence": seed_scores.verdict_sentence(name_a, name_b, verdict)})
    scored = [e for e in entries if e["distribution"]]
    rerun_best = (max if higher else min)(scored, key=lambda e: e["distribution"]["mean"]) if scored else None
    block = {"k": len(entries), "trials": entries, "pairs": pairs,
             "rerun_best": rerun_best["trial"] if rerun_best else None}
    block["findings"] = [p["sentence"] for p in pairs] + top_k_findings(block, metric)
    return block


def top_k_findings(block: dict[str, Any], metric: str) -> list[str]:
    """Would another trial have been chosen, had the tuner scored each over these seeds?"""
    pick, best = block["trials"][0], block["rerun_best"]
    n = pick["distribution"]["n"] if pick["distribution"] else 0
    if best is None:
        return ["No re-run of these trials gave a score, so none can be chosen."]
    if best == pick["trial"]:
        beaten = [p for p in block["pairs"] if p.get("detected") and p["p_a_beats_b"] > 0.5]
        kept = f"Re-run over the same {n} seeds, the tuner's pick (trial {pick['trial']}) keeps the best mean of " \
               f"the {block['k']}"
        if len(beaten) == len(block["pairs"]):
            return [f"{kept} and beats every other detectably: no other trial would have been chosen."]
        # Best mean, but not told apart from every other: chosen again, not with certainty (no contradiction).
        tied = len(block["pairs"]) - len(beaten)
        return [f"{kept}, so the tuner would choose it again; {tied} of the others cannot be told apart from it at "
                f"this N, so over other seeds {'it' if tied == 1 else 'one of them'} could have been chosen as "
                "well."]
    pair = next(p for p in block["pairs"] if p["b"] == f"trial {best}")
    if pair.get("detected") and pair.get("seed_free") and pair["p_a_beats_b"] < 0.5:
        return [f"Yes, another trial would have been chosen: re-run over the same {n} seeds, trial {best} does "
                f"better than the tuner's pick (trial {pick['trial']}) on every seed, and neither score changed "
                "with the seed: the tuner's ranking came from something other than the seed (its code, data or "
                "machine)."]
    if pair.get("detected") and pair["p_a_beats_b"] < 0.5:
        low, high = 1 - pair["p_ci95"][1], 1 - pair["p_ci95"][0]
        return [f"Yes, another trial would have been chosen: re-run over the same {n} seeds, trial {best} beats the "
                f"tuner's pick (trial {pick['trial']}) in {1 - pair['p_a_beats_b']:.0%} of paired seeds (95% CI "
                f"{low:.0%} to {high:.0%}); the pick won on a lucky seed."]
    return [f"Trial {best} has the best mean re-run over the same {n} seeds, but it cannot be told apart from the "
            f"tuner's pick (trial {pick['trial']}) at this N: the tuner could as well have chosen either."]


def top_k_table(block: dict[str, Any], metric: str) -> str:
    """The K trials side by side: their tuned score and what re-running gave."""
    from harness.table import format_table

    fmt = lambda v: stats.format_score(v, metric)  # noqa: E731
    rows = []
    for entry in block["trials"]:
        d = entry["distribution"]
        ci = d and d["mean_ci95"]
        rows.append([entry["trial"], hyperparameters.describe(entry["params"]), fmt(entry["tuned_score"]),
                     f"{d['n'] if d else 0}/{len(entry['scores'])}", fmt(d and d["mean"]), fmt(d and d["sd"]),
                     f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "-"])
    return format_table(["trial", "parameters", "tuned", "ok", "re-run mean", "SD", "mean 95% CI"], rows)
