"""The FPN paper's baselines (its Tables 1-3): each builds from its config with the levels its
detector reads, and differs from the FPN in the one thing it ablates (which inputs each output
sees)."""

import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

import fpn_variants

from .utils import make_cfg

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs", "Synthetic")
LEVELS = {
    "C4": ["p4"],
    "C5": ["p5"],
    "BottomUp": ["p2", "p3", "p4", "p5", "p6"],
    "TopDown": ["p2", "p3", "p4", "p5", "p6"],
    "FPNP2": ["p2"],
}


def load(name: str):
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(
        os.path.join(CONFIG_DIR, f"faster_rcnn_R18_{name}.yaml"), allow_unsafe=False
    )
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def neck_outputs(neck, features):
    with torch.no_grad():
        return neck.forward_neck(features)


def features_of(neck, size=128):
    torch.manual_seed(0)
    with torch.no_grad():
        return neck.bottom_up(torch.randn(1, 3, size, size))


@pytest.mark.parametrize("name", sorted(LEVELS))
def test_baseline_builds_with_its_detector_levels(name):
    cfg = load(name)
    neck = build_backbone(cfg).eval()
    assert list(neck.output_shape()) == LEVELS[name]
    assert set(cfg.MODEL.RPN.IN_FEATURES) <= set(LEVELS[name])
    assert set(cfg.MODEL.ROI_HEADS.IN_FEATURES) <= set(LEVELS[name])
    out = neck(torch.randn(1, 3, 96, 128))
    for level, shape in neck.output_shape().items():
        assert out[level].shape == (1, shape.channels, -(-96 // shape.stride), 128 // shape.stride)


def changed_outputs(neck, feature: str):
    """The output levels that change when one bottom-up feature is perturbed."""
    features = features_of(neck)
    before = neck_outputs(neck, features)
    features[feature] = features[feature] + 1.0
    after = neck_outputs(neck, features)
    return [k for k in before if not torch.allclose(before[k], after[k])]


def test_bottom_up_pyramid_has_no_top_down_path():
    neck = build_backbone(load("BottomUp")).eval()
    assert changed_outputs(neck, "res4") == ["p4"]
    assert changed_outputs(neck, "res5") == ["p5", "p6"]  # P6 subsamples P5


def test_top_down_pyramid_reads_no_lateral():
    neck = build_backbone(load("TopDown")).eval()
    for feature in ("res2", "res3", "res4"):
        assert changed_outputs(neck, feature) == []
    assert changed_outputs(neck, "res5") == ["p2", "p3", "p4", "p5", "p6"]


def test_finest_level_is_the_fpns_p2():
    cfg = load("FPNP2")
    neck = build_backbone(cfg).eval()
    fpn_cfg = cfg.clone()
    fpn_cfg.MODEL.BACKBONE.NAME = "build_fpn_backbone"
    fpn = build_backbone(fpn_cfg).eval()
    # the same laterals, top-down path and P2 output conv: FPN's weights load into it
    missing, unexpected = neck.load_state_dict(fpn.state_dict(), strict=False)
    assert missing == [] and unexpected and all(".nodes." in k for k in unexpected)
    features = features_of(fpn)
    assert torch.equal(neck_outputs(neck, features)["p2"], neck_outputs(fpn, features)["p2"])
    assert changed_outputs(neck, "res5") == ["p2"]  # the top-down path reaches P2


def test_single_scale_needs_one_feature():
    cfg = make_cfg("build_single_scale_backbone")
    with pytest.raises(ValueError, match=r"MODEL.FPN.IN_FEATURES=\['res2', .* exactly one"):
        build_backbone(cfg)


def test_finest_level_refuses_an_extra_level_it_cannot_feed():
    cfg = load("FPNP2")
    cfg.MODEL.FPN.NUM_EXTRA_LEVELS = 1  # EXTRA_LEVEL_TYPE "maxpool": P6 from P5
    cfg.MODEL.RPN.IN_FEATURES = ["p2"]
    with pytest.raises(ValueError, match="'maxpool' extra level subsamples the output at level 5"):
        build_backbone(cfg)
