"""NAS-FPN (Ghiasi et al., "NAS-FPN: Learning Scalable Feature Pyramid Architecture for Object
Detection", CVPR 2019), following the authors' TF code (TF Model Garden ``nasfpn.py``)."""

from functools import partial
from typing import Dict, List, Sequence, Tuple

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn

from ..layers.fusion import build_fusion
from ..layers.graph import NodeSpec
from ..layers.resample import PoolingEdges
from .base import (
    build_bottom_up,
    check_choice,
    check_table_is_read,
    check_type,
    pooled_extra_levels,
    variant_norm,
)
from .specs import NASFPN_CELL, extra_level_nodes, nasfpn_nodes, parse_nasfpn_rows
from .stacked import StackedCellsNeck

__all__ = ["NASFPN", "NASFPN_CELLS"]

Block = Tuple[int, str, Sequence[int], bool]

# Named cells, defined on P3-P7 (level 3 = the neck's lowest level).
NASFPN_CELLS: Dict[str, Sequence[Block]] = {
    "nasfpn": NASFPN_CELL,
    "nasfpn_sum": tuple((lvl, "sum", ab, out) for lvl, _, ab, out in NASFPN_CELL),
}

# Settings that differ between the authors' TF code and mmdetection's NASFPN.
_REFERENCES = {
    # gate = the input from the coarser level (ties: the first), max-pooled; TF BN settings.
    "tf": dict(gate="coarser", pool="max", lateral_bias=True, bn=(1e-3, 0.01)),
    # gate = the input from the finer level, average-pooled; PyTorch BN defaults.
    "mmdet": dict(gate="finer", pool="avg", lateral_bias=None, bn=(None, None)),
}


class NASFPN(StackedCellsNeck):
    """Stacked NAS-FPN cells of the published topology (:data:`specs.NASFPN_CELL`).

    - inputs: each bottom-up feature projected by 1x1 conv + BN (TF: only when its channels
      differ); extra levels by max-pooling (kernel = stride = 2, SAME) of the level below;
    - a cell: 7 merge blocks, each resampling its two inputs to its level (max-pool down, nearest
      up), merging them by sum or global-pooling attention, adding the not-yet-consumed features
      of its level when it is an output block, then ReLU -> 3x3 conv -> BN;
    - the outputs of a cell, sorted by level, are the inputs of the next.

    With ``reference="mmdet"`` it reproduces mmdetection's NASFPN (29,990,144 parameters at
    7 x 256 channels over ResNet-50 C3-C5; TF reference: 29,858,816).
    """

    @configurable
    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = 256,
        num_extra_levels: int = 2,
        num_repeats: int = 7,
        cell: str = "nasfpn",
        blocks: Sequence[Block] = (),
        reference: str = "tf",
        separable_conv: bool = False,
        norm: str = "BN",
        activation: str = "relu",
    ):
        """
        Args:
            bottom_up (Backbone), in_features (list[str]), out_channels (int): as :class:`FPN`.
            num_extra_levels (int): levels made above the last input by max-pooling.
            num_repeats (int): number of stacked cells, each with its own weights.
            cell (str): a name of :data:`NASFPN_CELLS` (shifted to the neck's lowest level), or
                "custom" for ``blocks``: (level, "sum" | "global_attention", (a, b), is_output)
                rows with absolute levels; ids 0..n-1 are the cell inputs, block k gets n + k;
                one output block per level (:func:`~fpn_variants.necks.specs.parse_nasfpn_rows`).
                ``blocks`` is an error with a named cell.
            reference (str): "tf" (authors' code) or "mmdet" (mmdetection's NASFPN).
            separable_conv (bool): depthwise-separable 3x3 convs in the merge cells.
            norm (str): norm of the projections and merge convs ("BN" in the paper).
            activation (str): activation before each merge conv ("relu").
        """
        super().__init__(bottom_up, in_features, out_channels)
        check_choice("MODEL.NASFPN.CELL", cell, [*NASFPN_CELLS, "custom"])
        check_choice("MODEL.NASFPN.REFERENCE", reference, list(_REFERENCES))
        self._check_num_repeats("MODEL.NASFPN.NUM_REPEATS", num_repeats)
        check_type("MODEL.NASFPN.SEPARABLE_CONV", separable_conv, bool)
        check_table_is_read("MODEL.NASFPN.BLOCKS", blocks, "MODEL.NASFPN.CELL", cell)
        ref = _REFERENCES[reference]
        eps, momentum = ref["bn"]
        min_level = self.input_levels[0]
        levels = list(range(min_level, self.input_levels[-1] + num_extra_levels + 1))
        n = len(self.in_features)
        laterals = [
            NodeSpec(level=lvl, inputs=(i,), is_output=True, post=False)
            for i, lvl in enumerate(self.input_levels)
        ]
        extra = extra_level_nodes(2 * n - 1, self.input_levels[-1], 2 * n, num_extra_levels)
        lateral_edges = PoolingEdges(
            norm=norm,
            norm_eps=eps,
            norm_momentum=momentum,
            bias=ref["lateral_bias"],
            always_project=reference == "mmdet",
        )
        self._build_cells(
            stem_nodes=laterals + extra,
            stem_edges=lateral_edges,
            cell_nodes=nasfpn_nodes(_cell_blocks(cell, blocks, levels), levels),
            cell_edges=PoolingEdges(),
            num_repeats=num_repeats,
            post_conv=dict(
                separable=separable_conv,
                norm=norm,
                norm_eps=eps,
                norm_momentum=momentum,
                bias=True,
                activation=activation,
                pre_act=True,
            ),
            make_fusion=partial(_merge, gate=ref["gate"], pool=ref["pool"]),
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        nasfpn = cfg.MODEL.NASFPN
        return {
            "bottom_up": build_bottom_up(cfg, input_shape),
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "num_extra_levels": pooled_extra_levels(cfg, "NAS-FPN"),
            "num_repeats": nasfpn.NUM_REPEATS,
            "cell": nasfpn.CELL,
            "blocks": nasfpn.BLOCKS,
            "reference": nasfpn.REFERENCE,
            "separable_conv": nasfpn.SEPARABLE_CONV,
            "norm": variant_norm(cfg, "NASFPN"),
            "activation": nasfpn.ACTIVATION,
        }


def _cell_blocks(cell: str, blocks: Sequence[Block], levels: List[int]) -> List[Block]:
    """The blocks of a named cell shifted to ``levels``, or the checked custom ``blocks``."""
    if cell == "custom":
        return parse_nasfpn_rows(blocks)
    if len(levels) != 5:
        raise ValueError(
            f"the {cell!r} cell is defined on 5 levels (P3-P7), but this neck has "
            f"{len(levels)}: levels {levels}; change MODEL.FPN.IN_FEATURES or "
            "MODEL.FPN.NUM_EXTRA_LEVELS, or write a cell for them (MODEL.NASFPN.CELL 'custom' "
            "and MODEL.NASFPN.BLOCKS)"
        )
    return [(lvl - 3 + levels[0], op, ab, out) for lvl, op, ab, out in NASFPN_CELLS[cell]]


def _merge(index: int, node: NodeSpec, src_levels: List[int], gate: str, pool: str) -> nn.Module:
    """The fusion of a merge block; global attention gates by the input that ``gate`` names."""
    if node.fusion != "global_attention":
        return build_fusion(node.fusion, len(node.inputs))
    # The gate input A of O = A + B * sigmoid(pool(A)); ties go to the first input.
    if gate == "coarser":
        first_is_gate = src_levels[0] >= src_levels[1]
    else:
        first_is_gate = src_levels[0] <= src_levels[1]
    gate_index = 0 if first_is_gate else 1
    return build_fusion(node.fusion, len(node.inputs), gate_index=gate_index, pool=pool)
