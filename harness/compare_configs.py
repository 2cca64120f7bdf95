"""`python -m harness.compare_configs`: is configuration A really better than B, or was it the seed?

    python -m harness.compare_configs --config=A:learning_rate=0.001 --config=B:learning_rate=0.003 --seeds=20
    python -m harness.compare_configs --config=tuned:results/tune/digits_mlp/NAME.best.json --config=default:

Each --config is LABEL:NAME=VALUE,... (fields over the benchmark's config; an
empty list is the benchmark itself), or LABEL:FILE.json or FILE.json (a file of
hyperparameters, as `harness.tune` writes its best one; FILE is the label).
Every configuration trains over the same N seeds of the study condition
`all`, so seed r of A and seed r of B are a pair. For every
two configurations the verdict is P(A beats B) over the paired seeds with a
95% interval (Bouthillier et al. 2021) and the mean paired difference, said in
one sentence. Records go to OUTPUT_DIR/trials.jsonl and the verdicts to
OUTPUT_DIR/compare.json (`harness.compare/1`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from absl import flags

from harness import cli, score_flags, trial_flags
from harness.analysis import stats
from harness.errors import UsageError
from harness.flags import RAY_FLAGS, executor_from_flags, value_or
from harness.platform import environment
from harness.schema import COMPARE_FILE, COMPARE_SCHEMA
from harness.studies.records import content_id, utc_timestamp, write_json
from harness.studies.storage import exclusive
from harness.tuning import comparison, hyperparameters, seed_scores

FLAGS = flags.FLAGS
# The shared flags compare_configs reads, which its --help lists with its own.
for _name in (*trial_flags.CONFIG_FLAGS, "seed", "metric", "seeds", "replicas", *RAY_FLAGS,
              "output_dir"):
    flags.declare_key_flag(_name)
flags.DEFINE_multi_string("config", None, "A configuration to compare: LABEL:NAME=VALUE,..., LABEL:FILE.json "
                          "or FILE.json (hyperparameters); give two or more.")



def configs_from_flags() -> list[tuple[str, dict[str, Any]]]:
    """(label, config fields) per --config, in the order given."""
    given = FLAGS.config or []
    if len(given) < 2:
        raise UsageError("give at least two configurations to compare, e.g. --config=A:learning_rate=0.001 "
                         "--config=B:learning_rate=0.01")
    found = []
    for text in given:
        if text.endswith(".json") and ":" not in text:
            found.append((Path(text).stem, hyperparameters.params_from_json(text).params))
            continue
        label, colon, rest = (part.strip() for part in text.partition(":"))
        if not colon or not label:
            raise UsageError(f"--config={text}: write LABEL:NAME=VALUE,..., LABEL:FILE.json or FILE.json")
        if rest.endswith(".json") and "=" not in rest:
            found.append((label, hyperparameters.params_from_json(rest).params))
        else:
            found.append((label, hyperparameters.parse_assignments(rest, f"--config={text}")))
    labels = [label for label, _ in found]
    if len(set(labels)) != len(labels):
        raise UsageError(f"two configurations share a label ({', '.join(labels)}); labels must differ")
    return found


def main(argv: list[str]) -> int:
    del argv
    base, metric = score_flags.scoring_from_flags(trial_flags.config_from_flags())
    candidates = [(label, fields, hyperparameters.configured(base, fields, f"--config={label}"))
                  for label, fields in configs_from_flags()]
    for _, _, config in candidates:
        seed_scores.check_metric(metric, config)
    # A directory per comparison (its configurations and seeds), so one never overwrites another's verdicts.
    identity = [[label, config.as_dict()] for label, _, config in candidates] + [FLAGS.seed, FLAGS.seeds]
    comparison_id = content_id(identity)
    output_dir = Path(value_or("output_dir", f"results/compare/{base.benchmark}/{comparison_id}"))
    executor = executor_from_flags()
    executor.check([config for _, _, config in candidates])  # before the directory is made
    with exclusive(output_dir):  # One run writes a directory at a time.
        replicas = score_flags.replicas_from_flags()
        started = time.perf_counter()
        configs, pairs = comparison.compare(candidates, metric, FLAGS.seed, FLAGS.seeds, output_dir, replicas,
                                           executor)
        document = {"schema": COMPARE_SCHEMA,
                    "created_at": utc_timestamp(),
                    "benchmark": base.benchmark, "metric": metric, "higher_is_better": stats.higher_is_better(metric),
                    "base_seed": FLAGS.seed, "n_seeds": FLAGS.seeds, "environment": environment.capture(),
                    "wall_s": time.perf_counter() - started, "configs": configs, "pairs": pairs}
        write_json(output_dir / COMPARE_FILE, document)
        print(comparison.format_comparison(document))
        print(f"\nrecords in {output_dir}/ (trials.jsonl, {COMPARE_FILE}); {document['wall_s']:.0f}s")
        return 0


if __name__ == "__main__":
    cli.run(main, writes_records=True)
