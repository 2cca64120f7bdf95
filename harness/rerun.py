"""`python -m harness.rerun --input_dir=DIR --trial_key=KEY`: does this recorded trial reproduce, run alone?

    python -m harness.rerun --input_dir=results/mnist1d_mlp --trial_key=3f2a9c

Finds the trial in DIR/trials.jsonl (a key's first characters are enough) and
trains it again by itself, in a fresh process with its condition's
environment variables, from the config and seeds its record holds; a trial
that trained as one of a group of vectorized replicas (`--replicas`) reruns
as a single trial. Then it prints each fingerprint both runs have, side by
side: initial weights, final weights, test predictions, loss trace. The
rerun's own record is not added to the study.

Exit 0: reproduced bit for bit; 1: a fingerprint differs (a finding); 2: bad
input (no such study or trial, a trial that failed, a study recorded in
another environment or on other code or data).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

import harness.flags  # noqa: F401 (defines --input_dir)
from harness import cli
from harness.errors import UsageError
from harness.table import format_table

FLAGS = flags.FLAGS
flags.declare_key_flag("input_dir")  # shared: its --help lists it with rerun's own
flags.DEFINE_string("trial_key", None, "The trial to rerun: its trial_key in the study's trials.jsonl, or the "
                    "key's first characters (at least 6).")


def format_rerun(result: dict) -> str:
    """What a person reads: which trial, how it ran first, and the fingerprints side by side."""
    record = result["record"]
    vectorized = (record.get("outputs") or {}).get("vectorized")
    how = (f"as replica {vectorized['index'] + 1} of {vectorized['replicas']} ({vectorized['path']} path)"
           if vectorized else "alone")
    rows = [(name, recorded[:16], rerun[:16], "yes" if recorded == rerun else "NO")
            for name, recorded, rerun in result["rows"]]
    verdict = ("reproduced bit for bit: every fingerprint is the record's." if result["same"] else
               "NOT reproduced: " + ", ".join(name for name, a, b in result["rows"] if a != b) + " differ.")
    return "\n".join([f"trial {record['trial_key']} ({record['condition']}, repeat {record['repeat']}), "
                      f"trained {how}; rerun alone in a fresh process:",
                      format_table(["fingerprint", "recorded", "rerun", "same"], rows), verdict])


def main(argv: list[str]) -> int:
    del argv
    if not FLAGS.input_dir or not FLAGS.trial_key:
        raise UsageError("name the study and the trial: --input_dir=results/STUDY --trial_key=KEY")
    from harness.studies.rerun import rerun_alone  # TensorFlow: not at import, which --help does

    result = rerun_alone(Path(FLAGS.input_dir), FLAGS.trial_key)
    print(format_rerun(result))
    return 0 if result["same"] else 1


if __name__ == "__main__":
    cli.run(main)
