"""What `harness.reeval` says of tuned hyperparameters re-run over fresh seeds: the score's distribution
set against the score the tuner reported (its percentile, the expected drop), and its findings in words."""

from __future__ import annotations

from typing import Any

from harness.analysis import stats
from harness.tuning import seed_scores


def comparison_block(found: dict[str, Any], metric: str, values: list[float | None], base_seed: int,
                     reused: int) -> dict[str, Any]:
    ok = [v for v in values if v is not None]
    distribution = seed_scores.describe_scores(values)
    block = {"source": found["source"], "hyperparameters": found["params"], "metric": metric,
             "higher_is_better": stats.higher_is_better(metric), "tuned_score_is": found["tuned_score_is"],
             "base_seed": base_seed, "tuning_seeds_reused": reused, "n_seeds": len(values),
             "n_failed": len(values) - len(ok), "distribution": distribution,
             **seed_scores.against_tuned_score(ok, found["tuned_score"], metric)}
    block["findings"] = comparison_findings(block)
    return block


def comparison_findings(block: dict[str, Any]) -> list[str]:
    metric, d = block["metric"], block["distribution"]
    if not d:
        return [f"No re-evaluation run gave a {metric} ({block['n_failed']} failed)."]
    fmt = lambda v: stats.format_score(v, metric)  # noqa: E731
    amount = lambda v: stats.format_amount(v, metric)  # noqa: E731
    ci = d["mean_ci95"]
    sd_ci = d["sd_ci95"]
    spread = f"SD {amount(d['sd'])}" + (f" (95% CI {fmt(sd_ci[0])} to {fmt(sd_ci[1])})" if sd_ci else "")
    mean = fmt(d["mean"]) + (f" on average (95% CI {fmt(ci[0])} to {fmt(ci[1])})" if ci else "")
    said = [f"Over {d['n']} {'fresh ' * (not block['tuning_seeds_reused'])}seeds, {metric} is {mean}, {spread}, "
            f"from {fmt(d['min'])} to {fmt(d['max'])}."]
    if block["n_failed"]:
        said.append(f"{block['n_failed']} of {block['n_seeds']} runs failed and are left out.")
    if block["tuned_score"] is None:
        said.append("No tuned score was given (--tuned_score), so there is nothing to set the runs against.")
        return said
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
