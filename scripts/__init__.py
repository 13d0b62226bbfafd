"""Commands that are not library: the demo, its data set and the sample pictures (run with python -m scripts.NAME)."""
