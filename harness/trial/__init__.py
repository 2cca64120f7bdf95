"""One trial, a pure function of its config and seeds: data, models, the train loop, fingerprints; and the
cost of determinism, two settings of one train step timed in interleaved blocks (cost.py)."""
