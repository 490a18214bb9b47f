"""Building blocks shared by every neck: convs, resampling, fusion ops and the graph engine."""

from .conv import ConvNormAct, SeparableConvNormAct, build_conv, get_activation, get_norm_layer
from .fusion import FUSIONS, build_fusion
from .graph import EdgeSpec, FusionGraph, FusionNode, NodeSpec
from .resample import MaxPoolSame, Resample, Upsample

__all__ = [
    "FUSIONS",
    "ConvNormAct",
    "EdgeSpec",
    "FusionGraph",
    "FusionNode",
    "MaxPoolSame",
    "NodeSpec",
    "Resample",
    "SeparableConvNormAct",
    "Upsample",
    "build_conv",
    "build_fusion",
    "get_activation",
    "get_norm_layer",
]
