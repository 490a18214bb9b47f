"""Detectron2 backbone builders: ``MODEL.BACKBONE.NAME: "build_<neck>_backbone"``.

Each builds the bottom-up network named by ``MODEL.BACKBONE.BOTTOM_UP`` and puts the neck on it.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from .necks import FPN

__all__ = ["NECK_BUILDERS", "build_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """The original FPN (:class:`fpn_variants.necks.FPN`) over ``MODEL.BACKBONE.BOTTOM_UP``."""
    return FPN(cfg, input_shape)


# Builder name -> neck class, for every neck this package registers.
NECK_BUILDERS = {"build_fpn_backbone": FPN}
