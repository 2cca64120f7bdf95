"""`python -m harness.objective_run SPEC PARAMS_JSON TRIAL SEED`: one seeded call of a user's Optuna objective
in a fresh process, for `harness.reeval --isolation=process`; prints its outcome as one JSON line (the call
itself: harness/tuning/objective_runs.py)."""

import sys

from harness.tuning.objective_runs import worker_main

if __name__ == "__main__":
    worker_main(sys.argv[1:])
