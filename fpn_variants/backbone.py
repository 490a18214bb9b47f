"""Detectron2 backbone builders: ``MODEL.BACKBONE.NAME: "build_<neck>_backbone"``.

Each checks the variant-only config nodes, builds the bottom-up network named by
``MODEL.BACKBONE.BOTTOM_UP`` and puts the neck on it.
"""

from typing import Callable, Dict, Type

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from .config import check_variant_keys
from .necks import (
    FPN,
    NASFPN,
    BiFPN,
    BottomUpPyramid,
    FinestLevelFPN,
    PANet,
    PyramidNeck,
    SingleScale,
    TopDownPyramid,
)
from .necks.options import OptionError
from .registry import ALL_BUILDERS, BASELINE_BUILDERS, NECK_BUILDERS

__all__ = [
    "ALL_BUILDERS",
    "BASELINE_BUILDERS",
    "NECK_BUILDERS",
    "build_bifpn_backbone",
    "build_bottom_up_pyramid_backbone",
    "build_finest_level_fpn_backbone",
    "build_fpn_backbone",
    "build_nasfpn_backbone",
    "build_panet_backbone",
    "build_single_scale_backbone",
    "build_top_down_pyramid_backbone",
    "check_detector_features",
]


def _neck_builder(neck_cls: Type[PyramidNeck]) -> Callable[[Callable], Callable]:
    """Register the decorated builder in BACKBONE_REGISTRY, marked with the class it builds
    (read by ``necks.base.build_bottom_up`` to refuse a neck as the bottom-up network)."""

    def register(builder: Callable) -> Callable:
        builder.neck_class = neck_cls
        BACKBONE_REGISTRY.register(builder)
        return builder

    return register


@_neck_builder(FPN)
def build_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """The original FPN (:class:`fpn_variants.necks.FPN`) over ``MODEL.BACKBONE.BOTTOM_UP``."""
    return _build(FPN, cfg, input_shape)


@_neck_builder(PANet)
def build_panet_backbone(cfg, input_shape: ShapeSpec) -> PANet:
    """FPN + PANet bottom-up path augmentation (:class:`fpn_variants.necks.PANet`)."""
    return _build(PANet, cfg, input_shape)


@_neck_builder(BiFPN)
def build_bifpn_backbone(cfg, input_shape: ShapeSpec) -> BiFPN:
    """Repeated BiFPN layers (:class:`fpn_variants.necks.BiFPN`)."""
    return _build(BiFPN, cfg, input_shape)


@_neck_builder(NASFPN)
def build_nasfpn_backbone(cfg, input_shape: ShapeSpec) -> NASFPN:
    """Stacked NAS-FPN cells (:class:`fpn_variants.necks.NASFPN`)."""
    return _build(NASFPN, cfg, input_shape)


@_neck_builder(SingleScale)
def build_single_scale_backbone(cfg, input_shape: ShapeSpec) -> SingleScale:
    """FPN paper baseline: one feature (MODEL.FPN.IN_FEATURES, e.g. ["res4"]), one level."""
    return _build(SingleScale, cfg, input_shape)


@_neck_builder(BottomUpPyramid)
def build_bottom_up_pyramid_backbone(cfg, input_shape: ShapeSpec) -> BottomUpPyramid:
    """FPN paper ablation: the bottom-up features' pyramid, no top-down path."""
    return _build(BottomUpPyramid, cfg, input_shape)


@_neck_builder(TopDownPyramid)
def build_top_down_pyramid_backbone(cfg, input_shape: ShapeSpec) -> TopDownPyramid:
    """FPN paper ablation: the top-down path without the 1x1 lateral connections."""
    return _build(TopDownPyramid, cfg, input_shape)


@_neck_builder(FinestLevelFPN)
def build_finest_level_fpn_backbone(cfg, input_shape: ShapeSpec) -> FinestLevelFPN:
    """FPN paper ablation: the FPN's finest output level only (P2)."""
    return _build(FinestLevelFPN, cfg, input_shape)


def _build(neck_cls: Type[PyramidNeck], cfg, input_shape: ShapeSpec) -> PyramidNeck:
    """Check the variant-only nodes, build the neck, check the detector reads its levels. Errors
    name the config keys."""
    check_variant_keys(cfg)
    try:
        neck = neck_cls(cfg, input_shape)
    except OptionError as error:  # worded with the arguments: name the keys instead
        raise error.in_config_terms(neck_cls.config_names) from error
    check_detector_features(cfg, neck.output_shape())
    return neck


# Config keys naming the pyramid levels each detector reads, by META_ARCHITECTURE.
_DETECTOR_FEATURE_KEYS = {
    "GeneralizedRCNN": ("RPN.IN_FEATURES", "ROI_HEADS.IN_FEATURES"),
    "RetinaNet": ("RETINANET.IN_FEATURES",),
}


def check_detector_features(cfg, shapes: Dict[str, ShapeSpec]) -> None:
    """Raise ValueError when the detector reads a level the neck does not produce (e.g.
    RetinaNet asking for p7 of a P2-P6 neck), or when the anchor sizes do not match its levels.
    """
    keys = _DETECTOR_FEATURE_KEYS.get(cfg.MODEL.META_ARCHITECTURE, ())
    for key in keys:
        node, leaf = key.split(".")
        wanted = list(cfg.MODEL[node][leaf])
        missing = [f for f in wanted if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.{key}={wanted} asks for {missing}, which the neck does not produce: it "
                f"outputs {list(shapes)}. Change MODEL.{key}, or the neck's levels "
                "(MODEL.FPN.IN_FEATURES, MODEL.FPN.NUM_EXTRA_LEVELS)"
            )
    if keys:
        levels = list(cfg.MODEL[keys[0].split(".")[0]].IN_FEATURES)
        sizes = cfg.MODEL.ANCHOR_GENERATOR.SIZES
        if len(sizes) not in (1, len(levels)):
            raise ValueError(
                f"MODEL.ANCHOR_GENERATOR.SIZES has {len(sizes)} entries but MODEL.{keys[0]} "
                f"has {len(levels)} levels {levels}: give one list of sizes per level (or one "
                "list for all)"
            )
