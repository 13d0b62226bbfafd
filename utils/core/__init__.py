"""Core: what every package shares. Settings, errors and the command-line wrapper, owned outputs (manifests,
locks, staging, swaps), the worker pool, tile placement and blending, several processes, runtime, logs."""
