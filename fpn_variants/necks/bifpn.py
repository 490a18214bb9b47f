"""BiFPN (Tan et al., "EfficientDet: Scalable and Efficient Object Detection", CVPR 2020, 3)."""

from dataclasses import replace
from functools import partial
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from detectron2.config import configurable
from detectron2.modeling import Backbone

from ..layers.graph import NodeSpec
from ..layers.resample import PoolingEdges
from .options import (
    OUT_CHANNELS,
    Names,
    Option,
    activation_option,
    check_group_norm_width,
    check_pooled_extra_levels,
    check_table_is_read,
    norm_option,
    pooled_extra_level_options,
)
from .specs import bifpn_nodes, custom_nodes, extra_level_nodes, pan_nodes, parse_bifpn_rows
from .stacked import StackedCellsNeck

__all__ = ["BIFPN_OPTIONS", "BIFPN_TOPOLOGIES", "BiFPN"]

# Named layer topologies: (min_level, max_level, fusion) -> node table.
BIFPN_TOPOLOGIES = {"bifpn": bifpn_nodes, "pan": pan_nodes}

NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE = pooled_extra_level_options("BiFPN")
NUM_REPEATS = Option(
    "num_repeats", "BIFPN.NUM_REPEATS", int, 3, "BiFPN layers, each with its own weights",
    "3 (D0)", minimum=1,
)  # fmt: skip
TOPOLOGY = Option(
    "topology", "BIFPN.TOPOLOGY", str, "bifpn",
    'node graph of a layer: "bifpn" (automl), "pan" (PANet layout, weighted fusion) or "custom"',
    '"bifpn"', (*BIFPN_TOPOLOGIES, "custom"),
)  # fmt: skip
NODES = Option(
    "nodes", "BIFPN.NODES", list, (),
    'with "custom": [[level, [input ids]], ...], ids 0..n-1 = inputs, node k = n+k; a level no '
    "node writes passes through (a 1x1 conv + norm to the width in the first layer)",
    "-",
)  # fmt: skip
FUSION = Option(
    "fusion", "BIFPN.FUSION", str, "fast_normalized",
    'fusion of a node\'s inputs: "fast_normalized", "softmax" or "sum"', '"fast_normalized"',
    ("fast_normalized", "softmax", "sum"),
)  # fmt: skip
SEPARABLE_CONV = Option(
    "separable_conv", "BIFPN.SEPARABLE_CONV", bool, True,
    "depthwise-separable (True) or regular 3x3 convs after each fusion", "True",
)  # fmt: skip
NORM = norm_option(
    "BIFPN", "norm of the projections and post-fusion convs; an older config's MODEL.FPN.NORM is "
    'used while this stays "BN"', '"BN"',
)  # fmt: skip
ACTIVATION = activation_option("BIFPN", "swish", 'of the post-fusion block: "swish", "relu" or ""')
PRE_ACTIVATION = Option(
    "pre_activation", "BIFPN.PRE_ACTIVATION", bool, True,
    "act -> conv -> norm (TF reference); False: conv -> norm -> act", "True",
)  # fmt: skip
REDUNDANT_BIAS = Option(
    "redundant_bias", "BIFPN.REDUNDANT_BIAS", bool, True,
    "conv biases in front of norms, as the TF checkpoints; False: bias only without norm", "True",
)  # fmt: skip
BIFPN_OPTIONS = (
    replace(OUT_CHANNELS, paper="64 (D0)"), NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE, NUM_REPEATS,
    TOPOLOGY, NODES, FUSION, SEPARABLE_CONV, NORM, ACTIVATION, PRE_ACTIVATION, REDUNDANT_BIAS,
)  # fmt: skip


class BiFPN(StackedCellsNeck):
    """Repeated weighted bidirectional feature-pyramid layers (BiFPN), as automl's reference.

    - extra levels above the inputs: P6_in = maxpool(norm(conv1x1(C5))), P7_in = maxpool(P6_in),
      max-pool kernel 3, stride 2, TF "SAME" padding;
    - each layer is the node graph of :func:`fpn_variants.necks.specs.bifpn_nodes`; an input is
      projected by its own 1x1 conv + norm on every edge where its channels differ (first layer),
      downsampled by max-pool (kernel 3, stride 2, SAME) or upsampled (nearest) to the node;
    - fusion: fast normalized (ReLU weights, eps 1e-4, one scalar per edge initialised to 1);
    - post block: swish -> depthwise-separable 3x3 conv -> BN (eps 1e-3, momentum 0.01).

    Outputs ``p<min>``..``p<max>`` with ``out_channels`` channels. With EfficientDet-D0 settings
    (64 channels, 3 layers, EfficientNet-B0 C3-C5) it has effdet's 196,281 parameters.
    """

    options = BIFPN_OPTIONS

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
        topology: str = TOPOLOGY.default,
        nodes: Sequence[Tuple[int, Sequence[int]]] = NODES.default,
        fusion: str = FUSION.default,
        separable_conv: bool = SEPARABLE_CONV.default,
        norm: str = NORM.default,
        activation: str = ACTIVATION.default,
        pre_activation: bool = PRE_ACTIVATION.default,
        redundant_bias: bool = REDUNDANT_BIAS.default,
        norm_eps: Optional[float] = 1e-3,
        norm_momentum: Optional[float] = 0.01,
    ):
        """
        Args:
            bottom_up (Backbone), in_features (list[str]): as :class:`FPN`.
            out_channels ... redundant_bias: see :data:`BIFPN_OPTIONS` (the README's option
                table). With ``topology="custom"``, ``nodes`` gives the layer (see
                :func:`fpn_variants.necks.specs.custom_nodes`).
            norm_eps, norm_momentum (float or None): BN settings (TF: 1e-3 and decay 0.99);
                None keeps PyTorch's.
        """
        self._check_arguments(locals())
        super().__init__(bottom_up, in_features, out_channels)
        max_level = self.input_levels[-1] + num_extra_levels
        table, passthrough = _layer_table(topology, nodes, self.input_levels[0], max_level, fusion)
        norm_args = dict(norm=norm, norm_eps=norm_eps, norm_momentum=norm_momentum)
        bias = True if redundant_bias else None
        edges = PoolingEdges(**norm_args, bias=bias, overlapping_pool=True)
        n = len(self.in_features)
        self._build_cells(
            stem_nodes=extra_level_nodes(n - 1, self.input_levels[-1], n, num_extra_levels),
            stem_edges=edges,
            stem_passthrough=range(n),
            cell_nodes=table,
            cell_edges=edges,
            cell_passthrough=passthrough,
            first_cell=partial(
                _first_layer, table, passthrough, out_channels, self.input_levels[0], fusion
            ),
            num_repeats=num_repeats,
            post_conv=dict(
                norm_args,
                separable=separable_conv,
                bias=bias,
                activation=activation,
                pre_act=pre_activation,
            ),
        )

    @classmethod
    def _check_together(cls, values: Mapping[str, Any], name: Names) -> None:
        check_pooled_extra_levels("BiFPN", values, name)
        check_table_is_read(name("nodes"), values["nodes"], name("topology"), values["topology"])
        if values["topology"] == "custom":
            parse_bifpn_rows(values["nodes"], name("nodes"), f"{name('topology')}='custom'")
        check_group_norm_width(values["norm"], values["out_channels"], name)


def _layer_table(
    topology: str, rows: Sequence, min_level: int, max_level: int, fusion: str
) -> Tuple[List[NodeSpec], List[int]]:
    """The node table of a layer and the levels it passes through (custom tables only)."""
    if topology == "custom":
        return custom_nodes(parse_bifpn_rows(rows), min_level, max_level, fusion)
    return BIFPN_TOPOLOGIES[topology](min_level, max_level, fusion), []


def _first_layer(
    table: List[NodeSpec],
    passthrough: List[int],
    out_channels: int,
    min_level: int,
    fusion: str,
    stem_channels: List[int],
) -> Tuple[List[NodeSpec], List[int]]:
    """The first layer: a level no node of a custom table writes passes its input through, which
    is a bottom-up feature there, projected to ``out_channels`` as on any edge."""
    projected = [i for i in passthrough if stem_channels[i] != out_channels]
    projections = [
        NodeSpec(level=min_level + i, inputs=(i,), fusion=fusion, is_output=True, post=False)
        for i in projected
    ]
    return table + projections, [i for i in passthrough if i not in projected]
