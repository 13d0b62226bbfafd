"""Training: settings, schedule, losses, resume rules, checks before a run, and the run with its epoch loop."""
