"""Optuna searches: hyperparameter spaces, seed-robust objectives, the study storage."""
