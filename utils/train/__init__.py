"""Training: settings and recipe, schedule, losses, processes, resume rules, data checks and the run."""
