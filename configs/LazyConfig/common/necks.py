"""Another neck in place of a detector config's FPN node, as the YAML builders make it: the same
bottom-up network, width and levels (``top_block``: "maxpool" is one extra level, "p6p7" two;
BiFPN and NAS-FPN make theirs by max-pooling, as their references do).

A variant config is its FPN config with one line: ``model.backbone = bifpn(model.backbone)``.
"""

from detectron2.config import LazyCall as L

from fpn_variants import NASFPN, BiFPN, PANet
from fpn_variants.necks.base import TOP_BLOCKS

__all__ = ["bifpn", "fpn_family", "nasfpn", "panet"]


def fpn_family(neck_cls, fpn, top_block=None):
    """A neck taking FPN's arguments (PANet, the FPN paper's baselines of
    ``fpn_variants.necks.ablations``) over the bottom-up network of the LazyCall ``fpn``, with
    its top block unless ``top_block`` is given."""
    return L(neck_cls)(
        **_geometry(fpn), top_block=fpn.top_block if top_block is None else top_block
    )


def panet(fpn):
    """PANet over the bottom-up network of the LazyCall ``fpn``, with its top block."""
    return fpn_family(PANet, fpn)


def bifpn(fpn, norm: str = "BN"):
    """BiFPN (paper defaults) over the bottom-up network of ``fpn``; ``norm`` in the neck."""
    return L(BiFPN)(**_geometry(fpn), num_extra_levels=TOP_BLOCKS[fpn.top_block], norm=norm)


def nasfpn(fpn, norm: str = "BN"):
    """NAS-FPN (paper defaults) over the bottom-up network of ``fpn``; ``norm`` in the neck."""
    return L(NASFPN)(**_geometry(fpn), num_extra_levels=TOP_BLOCKS[fpn.top_block], norm=norm)


def _geometry(fpn):
    return dict(
        bottom_up=fpn.bottom_up,
        in_features="${.bottom_up.out_features}",
        out_channels=fpn.out_channels,
    )
