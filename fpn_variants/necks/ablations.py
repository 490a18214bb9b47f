"""The FPN paper's ablation baselines (Lin et al. 2017, Tables 1-3) as necks: FPN's edges (1x1
laterals, nearest upsampling, the top block) and 3x3 output convs over other node layouts
(:mod:`fpn_variants.necks.specs`), so that each differs from the FPN in one thing only. They take
FPN's arguments and keys; Detectron2 FPN checkpoints do not map onto them.
"""

from typing import Dict, List

from ..layers.graph import NodeSpec
from .fpn import FPN
from .options import OptionError
from .specs import (
    bottom_up_pyramid_nodes,
    finest_level_nodes,
    fpn_nodes,
    top_down_nodes_without_laterals,
)

__all__ = ["BottomUpPyramid", "FinestLevelFPN", "SingleScale", "TopDownPyramid"]


class _Ablation(FPN):
    def _detectron2_aliases(self, num_nodes: int, num_conv_levels: int) -> Dict[str, str]:
        return {}


class SingleScale(_Ablation):
    """Single-scale baseline (Table 3 (a), (b)): one bottom-up feature, e.g. C4 or C5, through a
    1x1 lateral and a 3x3 conv; one output level, which the detector's anchors and RoIs all use.
    ``in_features`` names exactly one feature."""

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        if num_inputs != 1:
            raise OptionError(
                lambda name: f"{name('in_features')}={self.in_features} must name exactly one "
                "feature for a single-scale neck, e.g. ['res4']"
            )
        return fpn_nodes(1, min_level, fuse_type)


class BottomUpPyramid(_Ablation):
    """Table 2 (d), bottom-up pyramid: P_l = conv3x3(conv1x1(C_l)), no top-down path."""

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        return bottom_up_pyramid_nodes(num_inputs, min_level)


class TopDownPyramid(_Ablation):
    """Table 2 (e), top-down pyramid without lateral connections: M_max = conv1x1(C_max),
    M_l = up(M_(l+1)), P_l = conv3x3(M_l); the finer bottom-up features are not used."""

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        return top_down_nodes_without_laterals(num_inputs, min_level)


class FinestLevelFPN(_Ablation):
    """Table 2 (f), only the finest level: the FPN's top-down path with its laterals, and only
    the finest output (P2 over C2-C5), which the detector's anchors and RoIs all use."""

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        return finest_level_nodes(num_inputs, min_level, fuse_type)
