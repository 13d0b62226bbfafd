"""Network architectures, and reading, checking and writing their checkpoints (checkpoint.py)."""

from models.hinet import HINet, HINetConfig

__all__ = ["HINet", "HINetConfig"]
