"""Many trials: conditions, the plan and its run (resumable, in worker processes), records and storage."""
