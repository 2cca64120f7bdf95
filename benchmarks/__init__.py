"""Named benchmark definitions.

Each module with a `get_config()` is one benchmark: `get_config()` returns the
fields of `harness.trial.config.TrialConfig` it sets, and flags override them.
"""
