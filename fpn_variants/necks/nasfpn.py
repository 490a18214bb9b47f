"""NAS-FPN (Ghiasi et al., "NAS-FPN: Learning Scalable Feature Pyramid Architecture for Object
Detection", CVPR 2019), following the authors' TF code (TF Model Garden ``nasfpn.py``)."""

from typing import Dict, List, Sequence, Tuple

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn

from ..layers.conv import build_conv
from ..layers.fusion import build_fusion
from ..layers.graph import FusionGraph, NodeSpec
from ..layers.resample import PoolingEdges
from .base import (
    PyramidNeck,
    build_bottom_up,
    check_choice,
    check_table_is_read,
    check_type,
    pooled_extra_levels,
    variant_norm,
)
from .specs import NASFPN_CELL, extra_level_nodes, nasfpn_nodes, parse_nasfpn_rows

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
    "tf": dict(gate="coarser", pool="max", lateral_bias=True, project_extra=False, bn=(1e-3, 0.01)),
    # gate = the input from the finer level, average-pooled; PyTorch BN defaults.
    "mmdet": dict(gate="finer", pool="avg", lateral_bias=None, project_extra=True, bn=(None, None)),
}


class NASFPN(PyramidNeck):
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
        check_type("MODEL.NASFPN.NUM_REPEATS", num_repeats, int)
        check_type("MODEL.NASFPN.SEPARABLE_CONV", separable_conv, bool)
        check_table_is_read("MODEL.NASFPN.BLOCKS", blocks, "MODEL.NASFPN.CELL", cell)
        if num_repeats < 1:
            raise ValueError(f"MODEL.NASFPN.NUM_REPEATS={num_repeats} must be at least 1")
        ref = _REFERENCES[reference]
        eps, momentum = ref["bn"]
        min_level = self.input_levels[0]
        levels = list(range(min_level, self.input_levels[-1] + num_extra_levels + 1))
        if cell == "custom":
            blocks = parse_nasfpn_rows(blocks)
        else:
            if len(levels) != 5:
                raise ValueError(
                    f"the {cell!r} cell is defined on 5 levels (P3-P7), but this neck has "
                    f"{len(levels)}: levels {levels}; change MODEL.FPN.IN_FEATURES or "
                    "MODEL.FPN.NUM_EXTRA_LEVELS, or write a cell for them (MODEL.NASFPN.CELL "
                    "'custom' and MODEL.NASFPN.BLOCKS)"
                )
            blocks = [(lvl - 3 + min_level, op, ab, out) for lvl, op, ab, out in NASFPN_CELLS[cell]]
        table = nasfpn_nodes(blocks, levels)

        def make_fusion(index: int, node: NodeSpec, src_levels: List[int]) -> nn.Module:
            if node.fusion != "global_attention":
                return build_fusion(node.fusion, len(node.inputs))
            # The gate input A of O = A + B * sigmoid(pool(A)); ties go to the first input.
            if ref["gate"] == "coarser":
                first_is_gate = src_levels[0] >= src_levels[1]
            else:
                first_is_gate = src_levels[0] <= src_levels[1]
            gate = 0 if first_is_gate else 1
            return build_fusion(node.fusion, len(node.inputs), gate_index=gate, pool=ref["pool"])

        def make_post(index: int, node: NodeSpec) -> nn.Module:
            return build_conv(
                out_channels,
                out_channels,
                3,
                separable=separable_conv,
                norm=norm,
                norm_eps=eps,
                norm_momentum=momentum,
                bias=True,
                activation=activation,
                pre_act=True,
            )

        def graph(in_levels, in_channels, nodes, edges, passthrough=()) -> FusionGraph:
            return FusionGraph(
                in_levels,
                in_channels,
                nodes,
                channels=out_channels,
                min_level=min_level,
                make_edge=edges,
                make_fusion=make_fusion,
                make_post=make_post,
                passthrough=passthrough,
            )

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
        stem = graph(self.input_levels, self.input_channels, laterals + extra, lateral_edges)
        cell_edges = PoolingEdges()
        cells = [
            graph(
                levels,
                stem.output_channels if i == 0 else [out_channels] * len(levels),
                table,
                cell_edges,
            )
            for i in range(num_repeats)
        ]
        self._set_graphs(cells, stem=stem, size_divisibility=2 ** levels[-1])

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
