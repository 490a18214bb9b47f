"""The necks: one file each, all run by the graph engine of :mod:`fpn_variants.layers`."""

from .ablations import BottomUpPyramid, FinestLevelFPN, SingleScale, TopDownPyramid
from .base import PyramidNeck
from .bifpn import BiFPN
from .fpn import FPN
from .nasfpn import NASFPN
from .panet import PANet

__all__ = [
    "FPN",
    "NASFPN",
    "BiFPN",
    "BottomUpPyramid",
    "FinestLevelFPN",
    "PANet",
    "PyramidNeck",
    "SingleScale",
    "TopDownPyramid",
]
