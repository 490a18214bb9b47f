"""Detectron2 backbone builders: ``MODEL.BACKBONE.NAME: "build_<neck>_backbone"``.

Each checks the variant-only config nodes, builds the bottom-up network named by
``MODEL.BACKBONE.BOTTOM_UP`` and puts the neck on it.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from .config import check_variant_keys
from .necks import FPN, NASFPN, BiFPN, PANet

__all__ = [
    "NECK_BUILDERS",
    "build_bifpn_backbone",
    "build_fpn_backbone",
    "build_nasfpn_backbone",
    "build_panet_backbone",
]


@BACKBONE_REGISTRY.register()
def build_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """The original FPN (:class:`fpn_variants.necks.FPN`) over ``MODEL.BACKBONE.BOTTOM_UP``."""
    check_variant_keys(cfg)
    return FPN(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_panet_backbone(cfg, input_shape: ShapeSpec) -> PANet:
    """FPN + PANet bottom-up path augmentation (:class:`fpn_variants.necks.PANet`)."""
    check_variant_keys(cfg)
    return PANet(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_bifpn_backbone(cfg, input_shape: ShapeSpec) -> BiFPN:
    """Repeated BiFPN layers (:class:`fpn_variants.necks.BiFPN`)."""
    check_variant_keys(cfg)
    return BiFPN(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_nasfpn_backbone(cfg, input_shape: ShapeSpec) -> NASFPN:
    """Stacked NAS-FPN cells (:class:`fpn_variants.necks.NASFPN`)."""
    check_variant_keys(cfg)
    return NASFPN(cfg, input_shape)


# Builder name -> neck class, for every neck this package registers.
NECK_BUILDERS = {
    "build_fpn_backbone": FPN,
    "build_panet_backbone": PANet,
    "build_bifpn_backbone": BiFPN,
    "build_nasfpn_backbone": NASFPN,
}
