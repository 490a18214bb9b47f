"""FPN (Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017, section 3)."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence

from detectron2.config import configurable
from detectron2.modeling import Backbone
from torch import nn

from ..layers.conv import ConvNormAct, build_conv
from ..layers.fusion import build_fusion
from ..layers.graph import EdgeSpec, FusionGraph, NodeSpec
from ..layers.resample import UPSAMPLE_MODES, FitSize, MaxPoolSame, Resample, Upsample
from .base import PyramidNeck
from .options import (
    EXTRA_LEVEL_TYPE,
    NUM_EXTRA_LEVELS,
    OUT_CHANNELS,
    Names,
    Option,
    OptionError,
    check_group_norm_width,
    norm_option,
)
from .specs import extra_level_nodes, fpn_nodes

__all__ = ["FPN", "FPN_OPTIONS", "BottomUpPath", "TopDownEdges"]

FPN_NORM = norm_option(
    "FPN", 'norm after each conv ("" none, "BN", "GN", ...); convs have a bias only without norm',
    '"" (none)',
)  # fmt: skip
FUSE_TYPE = Option(
    "fuse_type", "FPN.FUSE_TYPE", str, "sum", 'top-down merge: "sum" or "avg"', '"sum"',
    ("sum", "avg"), detectron2=True,
)  # fmt: skip
UPSAMPLE = Option(
    "upsample", "FPN.UPSAMPLE", str, "nearest",
    'top-down upsampling: "nearest", "bilinear" or "deconv" (learned 2x transposed conv)',
    '"nearest"', UPSAMPLE_MODES,
)  # fmt: skip
TOP_BLOCK_IN = Option(
    "top_block_in", "FPN.TOP_BLOCK_IN", str, "",
    'input of the "conv" extra levels: the last input feature ("" or its name, e.g. "res5", '
    'RetinaNet) or the last output ("p5", FCOS)',
    '"res5" (RetinaNet)',
)  # fmt: skip
# The options of FPN, PANet and the FPN paper's baselines.
FPN_OPTIONS = (
    OUT_CHANNELS,
    FPN_NORM,
    FUSE_TYPE,
    UPSAMPLE,
    NUM_EXTRA_LEVELS,
    EXTRA_LEVEL_TYPE,
    TOP_BLOCK_IN,
)
# The extra levels FPN makes, (number, type): Detectron2's LastLevelMaxPool and LastLevelP6P7.
_FPN_EXTRA_LEVELS = ((1, "maxpool"), (2, "conv"))


class BottomUpPath(Protocol):
    """A bottom-up path after the FPN (PANet's): its nodes follow the FPN's in one table."""

    def nodes(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        """The whole table: the FPN's nodes first, then the path's."""

    def conv(self, stride: int) -> nn.Module:
        """A conv of the path: ``stride`` 2 between levels, 1 after a node's fusion."""


class TopDownEdges:
    """Edge policy of the FPN family: 1x1 laterals, top-down upsampling, the extra levels.

    - a graph input read at its own level gets a 1x1 lateral conv (+ norm), always, as in the
      paper; a node read at its own level is passed as is;
    - a coarser source is upsampled (``upsample`` mode) to the exact size of the target level;
    - levels above the inputs are the extra levels: "maxpool" subsamples by 2 (kernel 1, stride
      2), "conv" applies a 3x3 stride-2 conv, preceded by ReLU when its source is itself an extra
      level (P7 = conv(ReLU(P6)), RetinaNet);
    - a finer source (a bottom-up edge, e.g. PANet's) is handed to ``downsample``.
    """

    def __init__(
        self,
        *,
        norm: str,
        upsample: str,
        extra_level_type: str,
        max_input_level: int,
        downsample: Callable[[EdgeSpec], nn.Module],
    ):
        self.norm = norm
        self.upsample = upsample
        self.extra_level_type = extra_level_type
        self.max_input_level = max_input_level
        self.downsample = downsample

    def __call__(self, edge: EdgeSpec) -> nn.Module:
        if edge.dst_level > self.max_input_level:
            if self.extra_level_type == "maxpool":
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

    A subclass changes the graph through the argument ``bottom_up_path`` (PANet) or the step
    :meth:`_node_table` (the FPN paper's baselines), which reads only its arguments and the
    state :class:`PyramidNeck` has set.

    Example::

        >>> neck = FPN(bottom_up=resnet, in_features=["res2", "res3", "res4", "res5"],
        ...            out_channels=256, num_extra_levels=1)
        >>> {k: tuple(v.shape) for k, v in neck(torch.rand(1, 3, 224, 224)).items()}
        {'p2': (1, 256, 56, 56), 'p3': (1, 256, 28, 28), ..., 'p6': (1, 256, 4, 4)}
    """

    options = FPN_OPTIONS

    @configurable
    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = OUT_CHANNELS.default,
        norm: str = FPN_NORM.default,
        fuse_type: str = FUSE_TYPE.default,
        upsample: str = UPSAMPLE.default,
        num_extra_levels: int = NUM_EXTRA_LEVELS.default,
        extra_level_type: str = EXTRA_LEVEL_TYPE.default,
        top_block_in: str = TOP_BLOCK_IN.default,
        bottom_up_path: Optional[BottomUpPath] = None,
    ):
        """
        Args:
            bottom_up (Backbone): bottom-up network; its ``output_shape()`` gives the geometry.
            in_features (list[str]): its features used, high resolution first, strides doubling.
            out_channels, norm, fuse_type, upsample, num_extra_levels, extra_level_type,
                top_block_in: see :data:`FPN_OPTIONS` (the README's option table). FPN makes
                1 "maxpool" extra level (P6), 2 "conv" levels (P6, P7) or none.
            bottom_up_path (BottomUpPath or None): a path after the FPN (PANet passes its own).
        """
        self._check_arguments(locals())
        super().__init__(bottom_up, in_features, out_channels)
        fpn = self._node_table(len(self.in_features), self.input_levels[0], fuse_type)
        nodes = (
            fpn
            if bottom_up_path is None
            else bottom_up_path.nodes(len(self.in_features), self.input_levels[0], fuse_type)
        )
        extra = self._extra_level_nodes(nodes, num_extra_levels, extra_level_type, top_block_in)
        edges = TopDownEdges(
            norm=norm,
            upsample=upsample,
            extra_level_type=extra_level_type,
            max_input_level=self.input_levels[-1],
            downsample=_downsample(bottom_up_path),
        )
        cell = FusionGraph(
            self.input_levels,
            self.input_channels,
            nodes + extra,
            channels=out_channels,
            min_level=self.input_levels[0],
            make_edge=edges,
            make_fusion=lambda k, node, src_levels: build_fusion(node.fusion, len(node.inputs)),
            make_post=_post(out_channels, norm, len(fpn), bottom_up_path),
        )
        self._set_graphs([cell], size_divisibility=2 ** self.input_levels[-1])
        self._checkpoint_aliases = self._detectron2_aliases(
            len(nodes), num_extra_levels if extra_level_type == "conv" else 0
        )

    @classmethod
    def _check_together(cls, values: Mapping[str, Any], name: Names) -> None:
        num, kind = values["num_extra_levels"], values["extra_level_type"]
        if num and (num, kind) not in _FPN_EXTRA_LEVELS:
            raise ValueError(
                f"{name('num_extra_levels')}={num} with {name('extra_level_type')}={kind!r} is "
                "not an FPN top block: use 1 with 'maxpool' (P6), 2 with 'conv' (P6, P7) or 0"
            )
        check_group_norm_width(values["norm"], values["out_channels"], name)

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        """The nodes over the inputs (ids ``0..num_inputs-1``, levels from ``min_level``), fused
        by ``fuse_type``; the extra levels are added after them."""
        return fpn_nodes(num_inputs, min_level, fuse_type)

    def _extra_level_nodes(
        self, nodes: List[NodeSpec], num: int, kind: str, source_name: str
    ) -> List[NodeSpec]:
        """Extra-level nodes, reading the last input or the last output at the top input level."""
        if not num:
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
                raise OptionError(
                    lambda name: f"a 'maxpool' extra level subsamples the output at level {top}, "
                    f"which this neck does not produce: set {name('num_extra_levels')} to 0"
                )
        source_name = source_name or self.in_features[-1]
        if source_name not in sources:
            raise OptionError(
                lambda name: f"{name('top_block_in')}={source_name!r} is not one of "
                f"{list(sources)}"
            )
        return extra_level_nodes(sources[source_name], top, first_id, num)

    def _detectron2_aliases(self, num_nodes: int, num_conv_levels: int) -> Dict[str, str]:
        """Detectron2 FPN module names -> ours (layout of :func:`specs.fpn_nodes`)."""
        num_inputs, min_level = len(self.in_features), self.input_levels[0]
        max_level = self.input_levels[-1]
        aliases = {}
        for level in self.input_levels:
            aliases[f"fpn_lateral{level}"] = f"cells.0.nodes.{max_level - level}.edges.0.conv"
            aliases[f"fpn_output{level}"] = f"cells.0.nodes.{num_inputs + level - min_level}.post"
        for i in range(num_conv_levels):
            aliases[f"top_block.p{max_level + 1 + i}"] = (
                f"cells.0.nodes.{num_nodes + i}.edges.0.conv"
            )
        return aliases


def _post(
    channels: int, norm: str, path_start: int, path: Optional[BottomUpPath]
) -> Callable[[int, NodeSpec], nn.Module]:
    """The block after node ``index``'s fusion: FPN's 3x3 output conv (+ norm, no activation:
    the paper has no non-linearities), or the path's conv for the nodes from ``path_start``."""

    def post(index: int, node: NodeSpec) -> nn.Module:
        if path is not None and index >= path_start:
            return path.conv(stride=1)
        return build_conv(channels, channels, 3, norm=norm)

    return post


def _downsample(path: Optional[BottomUpPath]) -> Callable[[EdgeSpec], nn.Module]:
    """The resampler of an edge from a finer level below the extra levels: the path's stride-2
    conv; FPN alone has none."""

    def downsample(edge: EdgeSpec) -> nn.Module:
        if path is None:
            raise ValueError(
                f"node {edge.node} reads a finer level ({edge.src_level} -> {edge.dst_level}), "
                "but this neck has no bottom-up path"
            )
        return Resample(conv=path.conv(stride=2), spatial=FitSize())

    return downsample
