"""`python -m harness.keras_probe OUT STEPS MODE REFERENCE RUN_AS SCRIPT [ARGS]`: one observed run of a user's
Keras script, for `harness.doctor` (the probe itself: harness/analysis/keras_probe.py).

Not an absl program: the arguments after SCRIPT are the script's own. Bad arguments are one sentence and
exit 2, as in every program; what the script itself raises is its own traceback, as `python SCRIPT` shows it.
"""

import sys

from harness.analysis.keras_probe import main, parse_arguments
from harness.errors import UsageError

if __name__ == "__main__":
    try:
        invocation = parse_arguments(sys.argv[1:])
    except UsageError as error:
        from harness.cli import fail  # absl only here: the script runs with what it imports itself

        fail(str(error))
    main(invocation)
