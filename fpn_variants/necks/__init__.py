"""The necks: one file each, all built on :mod:`fpn_variants.layers`."""

from .base import PyramidNeck
from .fpn import FPN

__all__ = ["FPN", "PyramidNeck"]
