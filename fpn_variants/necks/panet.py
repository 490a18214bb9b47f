"""PANet (Liu et al., "Path Aggregation Network for Instance Segmentation", CVPR 2018, 3.1)."""

from typing import List, Sequence

from detectron2.config import configurable
from detectron2.modeling import Backbone
from torch import nn

from ..layers.conv import build_conv
from ..layers.graph import NodeSpec
from .fpn import (
    EXTRA_LEVEL_TYPE,
    FPN,
    FPN_NORM,
    FPN_OPTIONS,
    FUSE_TYPE,
    NUM_EXTRA_LEVELS,
    OUT_CHANNELS,
    TOP_BLOCK_IN,
    UPSAMPLE,
)
from .options import Option, activation_option
from .specs import PANET_ORDERINGS, panet_nodes

__all__ = ["PANET_OPTIONS", "PANet"]

ACTIVATION = activation_option(
    "PANET", "relu", 'after each conv of the bottom-up path: "relu", "swish" or "" (none, mmdet)'
)
ORDERING = Option(
    "ordering", "PANET.ORDERING", str, "official",
    '"official": N_l finished before it is downsampled; "mmdet": mmdetection\'s PAFPN order',
    '"official"', PANET_ORDERINGS,
)  # fmt: skip
PANET_OPTIONS = (*FPN_OPTIONS, ACTIVATION, ORDERING)


class _AugmentedPath:
    """PANet's bottom-up path: N_min = P_min; N_{l+1} = conv3x3(conv3x3_stride2(N_l) + P_{l+1}),
    every conv followed by the norm and ``activation``."""

    def __init__(self, channels: int, norm: str, activation: str, ordering: str):
        self.channels, self.norm = channels, norm
        self.activation, self.ordering = activation, ordering

    def nodes(self, num_inputs: int, min_level: int, fuse_type: str) -> List[NodeSpec]:
        return panet_nodes(num_inputs, min_level, fuse_type, self.ordering)

    def conv(self, stride: int) -> nn.Module:
        return build_conv(
            self.channels,
            self.channels,
            3,
            stride=stride,
            norm=self.norm,
            activation=self.activation,
        )


class PANet(FPN):
    """FPN followed by PANet's bottom-up path augmentation; outputs N_min..N_max (+ extra levels).

    N_min = P_min; N_{l+1} = conv3x3(conv3x3_stride2(N_l) + P_{l+1}), every conv of the path
    followed by the norm and ``activation`` (paper: "all convolutional layers are followed by a
    ReLU"). It is FPN given the path as its ``bottom_up_path`` argument: the node table
    (:func:`fpn_variants.necks.specs.panet_nodes`), the downsampling edges and the post blocks of
    the path.

    The FPN part keeps Detectron2's layout, so a Detectron2 FPN checkpoint initialises it (the
    bottom-up path then starts from scratch: load such weights with ``strict=False``).
    """

    options = PANET_OPTIONS

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
        activation: str = ACTIVATION.default,
        ordering: str = ORDERING.default,
    ):
        """
        Args:
            activation, ordering: see :data:`PANET_OPTIONS`; the others as :class:`FPN`
                ("maxpool" and "conv" extra levels from "p<max>" read N_max).
        """
        self._check_arguments(locals())
        super().__init__(
            bottom_up=bottom_up,
            in_features=in_features,
            out_channels=out_channels,
            norm=norm,
            fuse_type=fuse_type,
            upsample=upsample,
            num_extra_levels=num_extra_levels,
            extra_level_type=extra_level_type,
            top_block_in=top_block_in,
            bottom_up_path=_AugmentedPath(out_channels, norm, activation, ordering),
        )
