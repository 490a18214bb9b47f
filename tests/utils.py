"""Tiny configs (R18 bottom-up, narrow necks, small images) on the CPU."""

from detectron2.config import get_cfg

import fpn_variants


def make_cfg(neck: str = "build_fpn_backbone", levels: str = "p2p6", channels: int = 32):
    """A config for a ResNet-18 + ``neck`` backbone; ``levels`` is "p2p6" or "p3p7"."""
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = neck
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    if levels == "p2p6":
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.TOP_BLOCK = "maxpool"
    else:
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
        cfg.MODEL.FPN.TOP_BLOCK = "p6p7"
    cfg.MODEL.FPN.IN_FEATURES = list(cfg.MODEL.RESNETS.OUT_FEATURES)
    cfg.MODEL.FPN.OUT_CHANNELS = channels
    return cfg
