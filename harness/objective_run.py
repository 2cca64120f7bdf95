"""`python -m harness.objective_run SPEC PARAMS_JSON TRIAL SEED`: one seeded call of a user's Optuna objective
in a fresh process, for `harness.reeval --isolation=process`; prints its outcome as one JSON line (the call
itself: harness/tuning/objective_runs.py). Internal: `reeval` starts it; a person asking for --help gets this
text at once (nothing heavy is imported before the arguments are read)."""

import sys

HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")

if __name__ == "__main__":
    if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) != 5:
        print(f"error: harness.objective_run takes SPEC PARAMS_JSON TRIAL SEED (4 arguments), got {len(sys.argv) - 1}; "
              "harness.reeval --objective=FILE.py:FUNCTION starts it.", file=sys.stderr)
        sys.exit(2)
    from harness.tuning.objective_runs import worker_main

    worker_main(sys.argv[1:])
