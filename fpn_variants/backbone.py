"""Detectron2 backbone builders: ``MODEL.BACKBONE.NAME: "build_<neck>_backbone"``.

Each checks the variant-only config nodes, builds the bottom-up network named by
``MODEL.BACKBONE.BOTTOM_UP`` and puts the neck on it.
"""

from typing import Callable, Dict, Type

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY

from .config import check_variant_keys
from .necks.base import PyramidNeck
from .registry import ALL_BUILDERS, BASELINE_BUILDERS, NECK_BUILDERS, NECK_REGISTRY

__all__ = [
    "ALL_BUILDERS",
    "BASELINE_BUILDERS",
    "NECK_BUILDERS",
    "check_detector_features",
    *ALL_BUILDERS,  # build_fpn_backbone, build_panet_backbone, ...
]


def _make_builder(name: str, neck_cls: Type[PyramidNeck], doc: str) -> Callable:
    """The registered function ``name(cfg, input_shape)`` that builds ``neck_cls``."""

    def builder(cfg, input_shape: ShapeSpec) -> PyramidNeck:
        return _build(neck_cls, cfg, input_shape)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    # Read by necks.base.build_bottom_up to refuse a neck as the bottom-up network.
    builder.neck_class = neck_cls
    return builder


# One registered builder per registry row (rows sharing a builder share its function), also
# importable from this module: fpn_variants.backbone.build_fpn_backbone, ...
for _row in NECK_REGISTRY:
    if _row.builder not in globals():
        globals()[_row.builder] = _make_builder(_row.builder, _row.neck_class, _row.doc)
        BACKBONE_REGISTRY.register(globals()[_row.builder])
del _row


def _build(neck_cls: Type[PyramidNeck], cfg, input_shape: ShapeSpec) -> PyramidNeck:
    check_variant_keys(cfg)
    neck = neck_cls(cfg, input_shape)
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
