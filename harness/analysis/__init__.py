"""What records say: statistics, the study summary, divergence of two traced runs."""
