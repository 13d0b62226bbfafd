"""Inference: one image from file to file (restore.py), the model wrapper, ensemble weights, scores, lamps kept,
shares of several processes, ONNX and the submission."""
