"""Network architectures."""

from models.hinet import HINet

__all__ = ["HINet"]
