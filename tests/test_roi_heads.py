"""The RoI-to-level rule of the R-CNN poolers is a config key (PyramidROIHeads): boxes are pooled
from the level the configured rule names, the defaults are Detectron2's, and the CPU configs'
rule sends boxes of the built-in data to every level P2-P5."""

import os

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes

import fpn_variants
from fpn_variants.config import check_config
from fpn_variants.visualize import box_levels, pooler_levels

from .utils import builtin_data_in, make_cfg

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs", "Synthetic")


def load(name: str):
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(os.path.join(CONFIG_DIR, name), allow_unsafe=False)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def pooled_levels(pooler, sides):
    """Level each square box of side ``sides[i]`` is pooled from: every feature map is filled
    with its own level number, so the pooled value is the level."""
    feats = [torch.full((1, 1, 512 // 2**k, 512 // 2**k), float(k)) for k in (2, 3, 4, 5)]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides])
    out = pooler(feats, [Boxes(boxes)])
    return out.mean(dim=(1, 2, 3)).round().long().tolist()


@pytest.mark.parametrize("config", ["faster_rcnn_R18_FPN.yaml", "mask_rcnn_R18_PANet.yaml"])
def test_poolers_follow_the_configured_rule(config):
    cfg = load(config)
    assert (cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE, cfg.MODEL.ROI_HEADS.CANONICAL_LEVEL) == (72, 4)
    model = build_model(cfg)
    poolers = [model.roi_heads.box_pooler]
    if cfg.MODEL.MASK_ON:
        poolers.append(model.roi_heads.mask_pooler)
    # floor(4 + log2(s / 72)): P2 below 36 px, P3 below 72, P4 below 144, P5 above
    for pooler in poolers:
        assert pooled_levels(pooler, [20, 40, 100, 150, 250]) == [2, 3, 4, 5, 5]


def test_default_rule_is_detectron2s():
    cfg = make_cfg()
    cfg.MODEL.ROI_HEADS.NAME = "PyramidROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    check_config(cfg)
    pooler = build_model(cfg).roi_heads.box_pooler
    assert (pooler.canonical_box_size, pooler.canonical_level) == (224, 4)
    assert pooled_levels(pooler, [100, 112, 224, 448]) == [2, 3, 4, 5]


def test_cpu_rule_sends_boxes_to_every_level(tmp_path):
    cfg = load("faster_rcnn_R18_FPN.yaml")
    levels = pooler_levels(cfg)
    assert levels == [2, 3, 4, 5]
    with builtin_data_in(tmp_path, 40, 1):
        result = box_levels(
            "synthetic_multiscale_train",
            levels[0],
            levels[-1],
            cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE,
            cfg.MODEL.ROI_HEADS.CANONICAL_LEVEL,
        )
    counts = {k: int(np.sum(result["levels"] == k)) for k in levels}
    total = sum(counts.values())
    # every level gets a real share of the boxes (at least 5%), not a stray one
    assert all(count >= 0.05 * total for count in counts.values()), counts


@pytest.mark.parametrize(
    "key,value,error,message",
    [
        ("CANONICAL_BOX_SIZE", 0, ValueError, "CANONICAL_BOX_SIZE=0 must be a positive number"),
        ("CANONICAL_BOX_SIZE", "72", ValueError, "CANONICAL_BOX_SIZE='72' must be a positive"),
        ("CANONICAL_LEVEL", 4.0, TypeError, "CANONICAL_LEVEL=4.0 must be an integer"),
    ],
)
def test_bad_rule_values_are_refused(key, value, error, message):
    cfg = make_cfg()
    cfg.MODEL.ROI_HEADS.NAME = "PyramidROIHeads"
    cfg.MODEL.ROI_HEADS[key] = value
    with pytest.raises(error, match=message):
        check_config(cfg)


def test_rule_ignored_by_other_heads_is_refused():
    cfg = make_cfg()
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = 72
    with pytest.raises(ValueError, match="only read by MODEL.ROI_HEADS.NAME='PyramidROIHeads'"):
        check_config(cfg)
