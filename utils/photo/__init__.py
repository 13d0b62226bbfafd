"""Restoring a person's own photos: ``restore_image`` for Python programs, restore.py's files and web page."""

from utils.photo.api import restore_image

__all__ = ["restore_image"]
