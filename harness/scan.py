"""`python -m harness.scan --benchmark=NAME`: which ops of the train step are known GPU determinism problems?

Traces the benchmark's real train step (forward, gradients, optimizer) without
running it, lists its op types, and flags those in `harness/platform/known_ops.py`:
ops that make `kernels` differ from `control` on a GPU (deterministic only
with op determinism, since the TF version given), and ops that raise under op
determinism on a GPU. Studies run the same scan at start and warn in one line.
"""

from __future__ import annotations

from absl import flags

from harness import cli, trial_flags
from harness.analysis.op_scan import format_scan, scan

FLAGS = flags.FLAGS
# The shared flags scan reads, which its --help lists.
for _name in trial_flags.CONFIG_FLAGS:
    flags.declare_key_flag(_name)


def main(argv: list[str]) -> int:
    del argv
    print(format_scan(scan(trial_flags.config_from_flags())))
    return 0


if __name__ == "__main__":
    cli.run(main)
