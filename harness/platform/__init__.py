"""What the machine is and does: environment capture, op determinism switches, the known-ops table."""
