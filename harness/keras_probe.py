"""`python -m harness.keras_probe OUT STEPS SEED REFERENCE SCRIPT [ARGS]`: one observed run of a user's
Keras script, for `harness.doctor` (the probe itself: harness/analysis/keras_probe.py)."""

import sys

from harness.analysis.keras_probe import main

if __name__ == "__main__":
    main(sys.argv[1:])
