"""FPN (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017, section 3)."""

from typing import Callable, Dict, List, Sequence

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn

from ..layers.conv import ConvNormAct, build_conv
from ..layers.fusion import build_fusion
from ..layers.graph import EdgeSpec, FusionGraph, NodeSpec
from ..layers.resample import UPSAMPLE_MODES, FitSize, MaxPoolSame, Resample, Upsample
from .base import TOP_BLOCKS, PyramidNeck, build_bottom_up, check_choice, fpn_top_block
from .specs import extra_level_nodes, fpn_nodes

__all__ = ["FPN", "TopDownEdges"]


class TopDownEdges:
    """Edge policy of the FPN family: 1x1 laterals, top-down upsampling, the P6/P7 top block.

    - a graph input read at its own level gets a 1x1 lateral conv (+ norm), always, as in the
      paper; a node read at its own level is passed as is;
    - a coarser source is upsampled (``upsample`` mode) to the exact size of the target level;
    - levels above the inputs are the top block: "maxpool" subsamples by 2 (kernel 1, stride 2),
      "p6p7" applies a 3x3 stride-2 conv, preceded by ReLU when its source is itself an extra
      level (P7 = conv(ReLU(P6)), RetinaNet);
    - a finer source (a bottom-up edge, e.g. PANet's) is handed to ``downsample``.
    """

    def __init__(
        self,
        *,
        norm: str,
        upsample: str,
        top_block: str,
        max_input_level: int,
        downsample: Callable[[EdgeSpec], nn.Module],
    ):
        self.norm = norm
        self.upsample = upsample
        self.top_block = top_block
        self.max_input_level = max_input_level
        self.downsample = downsample

    def __call__(self, edge: EdgeSpec) -> nn.Module:
        if edge.dst_level > self.max_input_level:
            if self.top_block == "maxpool":
                return Resample(spatial=MaxPoolSame(1, 2))
            pre_relu = edge.src_level > self.max_input_level
            conv = ConvNormAct(
                edge.in_channels,
                edge.out_channels,
                3,
                stride=2,
                activation="relu" if pre_relu else "",
                pre_act=True,
            )
            return Resample(conv=conv, spatial=FitSize())
        if edge.src_level == edge.dst_level:
            if not edge.from_input:
                return Resample()
            return Resample(conv=build_conv(edge.in_channels, edge.out_channels, 1, norm=self.norm))
        if edge.src_level > edge.dst_level:
            factor = 2 ** (edge.src_level - edge.dst_level)
            return Resample(spatial=Upsample(factor, self.upsample, edge.in_channels))
        return self.downsample(edge)


class FPN(PyramidNeck):
    """The original FPN: 1x1 laterals, top-down 2x nearest upsampling + element-wise sum,
    3x3 output convs, no non-linearity; optional P6 (max-pool) or P6/P7 (convs) on top.

    Checkpoints of Detectron2's ``FPN`` (``fpn_lateral<l>``, ``fpn_output<l>``,
    ``top_block.p6/p7``) load into it unchanged.

    Subclasses change the graph through three hooks, called while ``__init__`` builds it:
    :meth:`_node_table` (the nodes over the inputs), :meth:`_post` (the block after a node's
    fusion) and :meth:`_downsample` (the edge from a finer level, which FPN has none of).

    Example::

        >>> neck = FPN(bottom_up=resnet, in_features=["res2", "res3", "res4", "res5"],
        ...            out_channels=256, top_block="maxpool")
        >>> {k: tuple(v.shape) for k, v in neck(torch.rand(1, 3, 224, 224)).items()}
        {'p2': (1, 256, 56, 56), 'p3': (1, 256, 28, 28), ..., 'p6': (1, 256, 4, 4)}
    """

    @configurable
    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = 256,
        norm: str = "",
        fuse_type: str = "sum",
        upsample: str = "nearest",
        top_block: str = "maxpool",
        top_block_in: str = "",
    ):
        """
        Args:
            bottom_up (Backbone): bottom-up network; its ``output_shape()`` gives the geometry.
            in_features (list[str]): its features used, high resolution first, strides doubling.
            out_channels (int): channels of every output level.
            norm (str): norm after each conv ("" = none, "GN", "BN", ...); convs have a bias
                only without norm.
            fuse_type (str): "sum" (paper) or "avg" of lateral and upsampled maps.
            upsample (str): "nearest" (paper), "bilinear" or "deconv".
            top_block (str): "maxpool" (P6 by stride-2 subsampling of P5), "p6p7" (P6 and P7 by
                stride-2 3x3 convs, ReLU before P7) or "" (none).
            top_block_in (str): input of "p6p7": the last of ``in_features`` (e.g. "res5",
                RetinaNet) or the last pyramid output (e.g. "p5", FCOS). Default: the former.
        """
        super().__init__(bottom_up, in_features, out_channels)
        check_choice("MODEL.FPN.FUSE_TYPE", fuse_type, ("sum", "avg"))
        check_choice("MODEL.FPN.UPSAMPLE", upsample, UPSAMPLE_MODES)
        check_choice("MODEL.FPN.TOP_BLOCK", top_block, TOP_BLOCKS)
        self._norm = norm
        min_level = self.input_levels[0]
        nodes = self._node_table(len(self.in_features), min_level, fuse_type)
        top_nodes = self._top_block(nodes, top_block, top_block_in)
        edges = TopDownEdges(
            norm=norm,
            upsample=upsample,
            top_block=top_block,
            max_input_level=self.input_levels[-1],
            downsample=self._downsample,
        )
        cell = FusionGraph(
            self.input_levels,
            self.input_channels,
            nodes + top_nodes,
            channels=out_channels,
            min_level=min_level,
            make_edge=edges,
            make_fusion=lambda k, node, src_levels: build_fusion(node.fusion, len(node.inputs)),
            make_post=self._post,
        )
        self._set_graphs([cell], size_divisibility=2 ** self.input_levels[-1])
        self._checkpoint_aliases = self._detectron2_aliases(len(nodes), top_block)

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        """Hook: the nodes over the inputs (ids ``0..num_inputs-1``, levels from ``min_level``),
        fused by ``fuse_type``; the top block is added after them."""
        return fpn_nodes(num_inputs, min_level, fuse_type)

    def _post(self, index: int, node: NodeSpec) -> nn.Module:
        """Hook: the block after the fusion of node ``index`` (``node.post`` nodes only)."""
        # 3x3 output conv (+ norm), no activation (paper: no non-linearities).
        return build_conv(self.out_channels, self.out_channels, 3, norm=self._norm)

    def _downsample(self, edge: EdgeSpec) -> nn.Module:
        """Hook: the resampler of an edge from a finer level below the top block."""
        raise ValueError(
            f"node {edge.node} reads a finer level ({edge.src_level} -> {edge.dst_level}), "
            "but this neck has no bottom-up path"
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        return {
            "bottom_up": build_bottom_up(cfg, input_shape),
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "norm": cfg.MODEL.FPN.NORM,
            "fuse_type": cfg.MODEL.FPN.FUSE_TYPE,
            "upsample": cfg.MODEL.FPN.UPSAMPLE,
            "top_block": fpn_top_block(cfg),
            "top_block_in": cfg.MODEL.FPN.TOP_BLOCK_IN,
        }

    def _top_block(self, nodes: List[NodeSpec], kind: str, source_name: str) -> List[NodeSpec]:
        """Top-block nodes, reading the last input or the last output at the top input level."""
        if not TOP_BLOCKS[kind]:
            return []
        top = self.input_levels[-1]
        first_id = len(self.in_features) + len(nodes)
        sources = {self.in_features[-1]: len(self.in_features) - 1}
        outputs = [len(self.in_features) + k for k, n in enumerate(nodes) if n.is_output]
        outputs = [i for i in outputs if nodes[i - len(self.in_features)].level == top]
        if outputs:
            sources[f"p{top}"] = outputs[-1]
        if kind == "maxpool":
            source_name = f"p{top}"
            if not outputs:
                raise ValueError(
                    f"a 'maxpool' extra level subsamples the output at level {top}, which this "
                    "neck does not produce: set MODEL.FPN.NUM_EXTRA_LEVELS to 0"
                )
        source_name = source_name or self.in_features[-1]
        check_choice("MODEL.FPN.TOP_BLOCK_IN", source_name, list(sources))
        source = sources[source_name]
        return extra_level_nodes(source, top, first_id, TOP_BLOCKS[kind])

    def _detectron2_aliases(self, num_nodes: int, top_block: str) -> Dict[str, str]:
        """Detectron2 FPN module names -> ours (layout of :func:`specs.fpn_nodes`)."""
        num_inputs, min_level = len(self.in_features), self.input_levels[0]
        max_level = self.input_levels[-1]
        aliases = {}
        for level in self.input_levels:
            aliases[f"fpn_lateral{level}"] = f"cells.0.nodes.{max_level - level}.edges.0.conv"
            aliases[f"fpn_output{level}"] = f"cells.0.nodes.{num_inputs + level - min_level}.post"
        if top_block == "p6p7":
            for i, level in enumerate((max_level + 1, max_level + 2)):
                aliases[f"top_block.p{level}"] = f"cells.0.nodes.{num_nodes + i}.edges.0.conv"
        return aliases
