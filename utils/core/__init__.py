"""Core: settings, errors and the command-line wrapper, output ownership and locks, checkpoints, runtime, logs."""
