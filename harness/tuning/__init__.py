"""Optuna searches: hyperparameter spaces, seed-robust objectives, the study storage, and a user's own objective
re-run over seeds."""
