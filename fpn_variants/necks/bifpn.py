"""BiFPN (Tan et al., "EfficientDet: Scalable and Efficient Object Detection", CVPR 2020, 3)."""

from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

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
from .specs import bifpn_nodes, custom_nodes, extra_level_nodes, pan_nodes, parse_bifpn_rows
from .stacked import StackedCellsNeck

__all__ = ["BIFPN_TOPOLOGIES", "BiFPN"]

# Named layer topologies: (min_level, max_level, fusion) -> node table.
BIFPN_TOPOLOGIES = {"bifpn": bifpn_nodes, "pan": pan_nodes}


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

    @configurable
    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = 64,
        num_extra_levels: int = 2,
        num_repeats: int = 3,
        topology: str = "bifpn",
        nodes: Sequence[Tuple[int, Sequence[int]]] = (),
        fusion: str = "fast_normalized",
        separable_conv: bool = True,
        norm: str = "BN",
        norm_eps: Optional[float] = 1e-3,
        norm_momentum: Optional[float] = 0.01,
        activation: str = "swish",
        pre_activation: bool = True,
        redundant_bias: bool = True,
    ):
        """
        Args:
            bottom_up (Backbone), in_features (list[str]), out_channels (int): as :class:`FPN`.
            num_extra_levels (int): levels made above the last input (2: P6, P7).
            num_repeats (int): number of BiFPN layers, each with its own weights.
            topology (str): "bifpn", "pan" or "custom" (then ``nodes`` gives the layer as
                (level, input ids) rows, see :func:`fpn_variants.necks.specs.custom_nodes`; a
                level no row writes passes through, projected to ``out_channels`` by a 1x1 conv
                + norm in the first layer). ``nodes`` is an error with another topology.
            fusion (str): "fast_normalized", "softmax" or "sum".
            separable_conv (bool): depthwise-separable (True) or regular 3x3 post convs.
            norm (str): norm of the projections and post convs ("BN" in the paper; "" none).
            norm_eps, norm_momentum (float or None): BN settings (TF: 1e-3 and decay 0.99);
                None keeps PyTorch's.
            activation (str): "swish", "relu" or "".
            pre_activation (bool): act -> conv -> norm (TF) or conv -> norm -> act.
            redundant_bias (bool): conv biases before norms, as the TF checkpoints.
        """
        super().__init__(bottom_up, in_features, out_channels)
        check_choice("MODEL.BIFPN.TOPOLOGY", topology, [*BIFPN_TOPOLOGIES, "custom"])
        check_choice("MODEL.BIFPN.FUSION", fusion, ("fast_normalized", "softmax", "sum"))
        self._check_num_repeats("MODEL.BIFPN.NUM_REPEATS", num_repeats)
        for key, value in (
            ("SEPARABLE_CONV", separable_conv),
            ("PRE_ACTIVATION", pre_activation),
            ("REDUNDANT_BIAS", redundant_bias),
        ):
            check_type(f"MODEL.BIFPN.{key}", value, bool)
        check_table_is_read("MODEL.BIFPN.NODES", nodes, "MODEL.BIFPN.TOPOLOGY", topology)
        if num_extra_levels < 0:
            raise ValueError(f"num_extra_levels={num_extra_levels} must be >= 0")
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
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        bifpn = cfg.MODEL.BIFPN
        return {
            "bottom_up": build_bottom_up(cfg, input_shape),
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "num_extra_levels": pooled_extra_levels(cfg, "BiFPN"),
            "num_repeats": bifpn.NUM_REPEATS,
            "topology": bifpn.TOPOLOGY,
            "nodes": bifpn.NODES,
            "fusion": bifpn.FUSION,
            "separable_conv": bifpn.SEPARABLE_CONV,
            "norm": variant_norm(cfg, "BIFPN"),
            "activation": bifpn.ACTIVATION,
            "pre_activation": bifpn.PRE_ACTIVATION,
            "redundant_bias": bifpn.REDUNDANT_BIAS,
        }


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
