"""Another neck in place of a detector config's FPN node, as the YAML builders make it: the same
bottom-up network, width and levels (``num_extra_levels``; BiFPN and NAS-FPN make theirs by
max-pooling, as their references do).

A variant config is its FPN config with one line: ``model.backbone = bifpn(model.backbone)``.
"""

from detectron2.config import LazyCall as L

from fpn_variants import NASFPN, BiFPN, PANet

__all__ = ["bifpn", "fpn_family", "nasfpn", "panet"]


def fpn_family(neck_cls, fpn, num_extra_levels=None):
    """A neck taking FPN's arguments (PANet, the FPN paper's baselines of
    ``fpn_variants.necks.ablations``) over the bottom-up network of the LazyCall ``fpn``, with
    its extra levels unless ``num_extra_levels`` is given."""
    return L(neck_cls)(
        **_geometry(fpn),
        num_extra_levels=fpn.num_extra_levels if num_extra_levels is None else num_extra_levels,
        extra_level_type=fpn.extra_level_type,
    )


def panet(fpn):
    """PANet over the bottom-up network of the LazyCall ``fpn``, with its extra levels."""
    return fpn_family(PANet, fpn)


def bifpn(fpn, norm: str = "BN"):
    """BiFPN (paper defaults) over the bottom-up network of ``fpn``; ``norm`` in the neck."""
    return L(BiFPN)(**_geometry(fpn), num_extra_levels=fpn.num_extra_levels, norm=norm)


def nasfpn(fpn, norm: str = "BN"):
    """NAS-FPN (paper defaults) over the bottom-up network of ``fpn``; ``norm`` in the neck."""
    return L(NASFPN)(**_geometry(fpn), num_extra_levels=fpn.num_extra_levels, norm=norm)


def _geometry(fpn):
    return dict(
        bottom_up=fpn.bottom_up,
        in_features="${.bottom_up.out_features}",
        out_channels=fpn.out_channels,
    )
