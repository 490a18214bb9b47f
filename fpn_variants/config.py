"""Configuration keys added by fpn_variants to Detectron2's yacs config.

Call :func:`add_fpn_variants_config` on a fresh ``get_cfg()`` before ``merge_from_file`` so that
YAML files using the new keys merge (an unknown key is an error at merge time).
"""

import torch
from detectron2.config import CfgNode as CN

__all__ = ["add_fpn_variants_config"]


def add_fpn_variants_config(cfg: CN) -> CN:
    """Add every fpn_variants key, with its paper default, to ``cfg`` (in place) and return it."""
    # Detectron2 defaults to "cuda"; this project is usable on CPU-only machines out of the box.
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

    # Bottom-up network under the neck: any BACKBONE_REGISTRY entry that returns a Backbone.
    cfg.MODEL.BACKBONE.BOTTOM_UP = "build_resnet_backbone"

    # Shared neck keys live on Detectron2's MODEL.FPN node (IN_FEATURES, OUT_CHANNELS, NORM and
    # FUSE_TYPE are Detectron2's own), so existing FPN configs keep working.
    # Extra levels above the last input: "maxpool" (P6 = stride-2 subsampling of P5, two-stage
    # detectors), "p6p7" (P6, P7 by stride-2 3x3 convs, ReLU before P7, RetinaNet) or "" (none).
    cfg.MODEL.FPN.TOP_BLOCK = "maxpool"
    # Input of the "p6p7" block: "res5" (last bottom-up feature, RetinaNet paper) or "p5" (last
    # pyramid output, as in FCOS).
    cfg.MODEL.FPN.TOP_BLOCK_IN = "res5"
    # Top-down upsampling: "nearest" (paper), "bilinear" or "deconv" (learned 2x transposed conv).
    cfg.MODEL.FPN.UPSAMPLE = "nearest"
    return cfg
