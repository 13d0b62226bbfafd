"""Network architectures."""

from models.hinet import HINet, HINetConfig

__all__ = ["HINet", "HINetConfig"]
