"""PANet (Liu et al., "Path Aggregation Network for Instance Segmentation", CVPR 2018, 3.1)."""

from typing import Dict, List, Sequence

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from torch import nn

from ..layers.conv import ACTIVATIONS, build_conv
from ..layers.graph import EdgeSpec, NodeSpec
from ..layers.resample import FitSize, Resample
from .base import check_choice
from .fpn import FPN
from .specs import panet_nodes

__all__ = ["PANet"]


class PANet(FPN):
    """FPN followed by PANet's bottom-up path augmentation; outputs N_min..N_max (+ top block).

    N_min = P_min; N_{l+1} = conv3x3(conv3x3_stride2(N_l) + P_{l+1}), every conv of the path
    followed by the norm and ``activation`` (paper: "all convolutional layers are followed by a
    ReLU"). It is FPN with FPN's hooks overridden: the node table
    (:func:`fpn_variants.necks.specs.panet_nodes`), the downsampling edges and the post blocks of
    the path.

    The FPN part keeps Detectron2's layout, so a Detectron2 FPN checkpoint initialises it (the
    bottom-up path then starts from scratch: load such weights with ``strict=False``).
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
        activation: str = "relu",
        ordering: str = "official",
    ):
        """
        Args:
            activation (str): activation after each conv of the bottom-up path: "relu" (paper),
                "swish" or "" (none, as mmdetection's PAFPN).
            ordering (str): "official" (N_l finished before it is downsampled) or "mmdet"
                (mmdetection's PAFPN: the pre-conv running sum is downsampled).
            others: as :class:`FPN`; "maxpool" and "p6p7" from "p<max>" read N_max.
        """
        check_choice("MODEL.PANET.ACTIVATION", activation, ACTIVATIONS)
        check_choice("MODEL.PANET.ORDERING", ordering, ("official", "mmdet"))
        # Read by the hooks, which FPN.__init__ calls.
        self._activation = activation
        self._ordering = ordering
        self._path_start = 0
        super().__init__(
            bottom_up=bottom_up,
            in_features=in_features,
            out_channels=out_channels,
            norm=norm,
            fuse_type=fuse_type,
            upsample=upsample,
            top_block=top_block,
            top_block_in=top_block_in,
        )

    def _node_table(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        # The FPN's nodes come first, then the path's.
        self._path_start = len(super()._node_table(num_inputs, min_level, fuse_type))
        return panet_nodes(num_inputs, min_level, fuse_type, self._ordering)

    def _post(self, index: int, node: NodeSpec) -> nn.Module:
        if index < self._path_start:
            return super()._post(index, node)
        # The 3x3 conv (+ norm + activation) that finishes N_l.
        return self._path_conv(stride=1)

    def _downsample(self, edge: EdgeSpec) -> nn.Module:
        """The stride-2 3x3 conv (+ norm + activation) from N_l (or M_l) to level l+1."""
        return Resample(conv=self._path_conv(stride=2), spatial=FitSize())

    def _path_conv(self, stride: int) -> nn.Module:
        channels = self.out_channels
        return build_conv(
            channels, channels, 3, stride=stride, norm=self._norm, activation=self._activation
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict:
        return {
            **FPN.from_config(cfg, input_shape),
            "activation": cfg.MODEL.PANET.ACTIVATION,
            "ordering": cfg.MODEL.PANET.ORDERING,
        }
