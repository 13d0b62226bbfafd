"""Inference: tiles and blending, the model wrapper, ensemble weights and the submission."""
