"""NAS-FPN (Ghiasi et al., "NAS-FPN: Learning Scalable Feature Pyramid Architecture for Object
Detection", CVPR 2019), following the authors' TF code (TF Model Garden ``nasfpn.py``)."""

from functools import partial
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from detectron2.config import configurable
from detectron2.modeling import Backbone
from torch import nn

from ..layers.fusion import build_fusion
from ..layers.graph import NodeSpec
from ..layers.resample import PoolingEdges
from .options import (
    OUT_CHANNELS,
    Names,
    Option,
    OptionError,
    activation_option,
    check_group_norm_width,
    check_pooled_extra_levels,
    check_table_is_read,
    norm_option,
    pooled_extra_level_options,
)
from .specs import NASFPN_CELL, extra_level_nodes, nasfpn_nodes, parse_nasfpn_rows
from .stacked import StackedCellsNeck

__all__ = ["NASFPN", "NASFPN_CELLS", "NASFPN_OPTIONS"]

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


NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE = pooled_extra_level_options("NAS-FPN")
NUM_REPEATS = Option(
    "num_repeats", "NASFPN.NUM_REPEATS", int, 7, "stacked cells, each with its own weights",
    "7 (at 256 channels)", minimum=1,
)  # fmt: skip
CELL = Option(
    "cell", "NASFPN.CELL", str, "nasfpn",
    'cell topology: "nasfpn" (published), "nasfpn_sum" (every merge a sum) or "custom"; named '
    "cells are defined on P3-P7 and shift with the neck's levels",
    '"nasfpn"', (*NASFPN_CELLS, "custom"),
)  # fmt: skip
BLOCKS = Option(
    "blocks", "NASFPN.BLOCKS", list, (),
    'with "custom": [[level, "sum" or "global_attention", [a, b], is_output], ...], ids 0..4 = '
    "inputs, block k = 5+k; one output block per level",
    "-",
)  # fmt: skip
REFERENCE = Option(
    "reference", "NASFPN.REFERENCE", str, "tf",
    '"tf": the authors\' code; "mmdet": mmdetection\'s NASFPN (gate from the finer input, '
    "average-pooled; 1x1 conv + BN before each extra-level pool; PyTorch BN defaults)",
    '"tf"', tuple(_REFERENCES),
)  # fmt: skip
SEPARABLE_CONV = Option(
    "separable_conv", "NASFPN.SEPARABLE_CONV", bool, False,
    "depthwise-separable 3x3 convs in the merge cells", "False",
)  # fmt: skip
NORM = norm_option(
    "NASFPN", "norm of the lateral projections and merge convs; an older config's MODEL.FPN.NORM "
    'is used while this stays "BN"', '"BN"',
)  # fmt: skip
ACTIVATION = activation_option("NASFPN", "relu", 'before each merge conv: "relu", "swish" or ""')
NASFPN_OPTIONS = (
    OUT_CHANNELS, NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE, NUM_REPEATS, CELL, BLOCKS, REFERENCE,
    SEPARABLE_CONV, NORM, ACTIVATION,
)  # fmt: skip


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

    options = NASFPN_OPTIONS

    @configurable
    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = OUT_CHANNELS.default,
        num_extra_levels: int = NUM_EXTRA_LEVELS.default,
        extra_level_type: str = EXTRA_LEVEL_TYPE.default,
        num_repeats: int = NUM_REPEATS.default,
        cell: str = CELL.default,
        blocks: Sequence[Block] = BLOCKS.default,
        reference: str = REFERENCE.default,
        separable_conv: bool = SEPARABLE_CONV.default,
        norm: str = NORM.default,
        activation: str = ACTIVATION.default,
    ):
        """
        Args:
            bottom_up (Backbone), in_features (list[str]): as :class:`FPN`.
            out_channels ... activation: see :data:`NASFPN_OPTIONS` (the README's option
                table). With ``cell="custom"``, ``blocks`` are (level, "sum" |
                "global_attention", (a, b), is_output) rows with absolute levels; ids 0..n-1 are
                the cell inputs, block k gets n + k; one output block per level
                (:func:`~fpn_variants.necks.specs.parse_nasfpn_rows`).
        """
        self._check_arguments(locals())
        super().__init__(bottom_up, in_features, out_channels)
        ref = _REFERENCES[reference]
        eps, momentum = ref["bn"]
        min_level = self.input_levels[0]
        levels = list(range(min_level, self.input_levels[-1] + num_extra_levels + 1))
        lateral_edges = PoolingEdges(
            norm=norm,
            norm_eps=eps,
            norm_momentum=momentum,
            bias=ref["lateral_bias"],
            always_project=reference == "mmdet",
        )
        self._build_cells(
            stem_nodes=_stem_nodes(self.input_levels, num_extra_levels),
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
    def _check_together(cls, values: Mapping[str, Any], name: Names) -> None:
        check_pooled_extra_levels("NAS-FPN", values, name)
        check_table_is_read(name("blocks"), values["blocks"], name("cell"), values["cell"])
        if values["cell"] == "custom":
            parse_nasfpn_rows(values["blocks"], name("blocks"), f"{name('cell')}='custom'")
        check_group_norm_width(values["norm"], values["out_channels"], name)


def _stem_nodes(input_levels: List[int], num_extra_levels: int) -> List[NodeSpec]:
    """Each input's lateral projection (ids n..2n-1), then the extra levels over the last."""
    n = len(input_levels)
    laterals = [
        NodeSpec(level=lvl, inputs=(i,), is_output=True, post=False)
        for i, lvl in enumerate(input_levels)
    ]
    return laterals + extra_level_nodes(2 * n - 1, input_levels[-1], 2 * n, num_extra_levels)


def _cell_blocks(cell: str, blocks: Sequence[Block], levels: List[int]) -> List[Block]:
    """The blocks of a named cell shifted to ``levels``, or the checked custom ``blocks``."""
    if cell == "custom":
        return parse_nasfpn_rows(blocks)
    if len(levels) != 5:
        raise OptionError(
            lambda name: f"the {cell!r} cell is defined on 5 levels (P3-P7), but this neck has "
            f"{len(levels)}: levels {levels}; change {name('in_features')} or "
            f"{name('num_extra_levels')}, or write a cell for them ({name('cell')} 'custom' and "
            f"{name('blocks')})"
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
