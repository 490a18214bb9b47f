"""Export of every neck, and of Faster R-CNN, RetinaNet and Mask R-CNN on every neck: TorchScript
(scripting, tracing) and ONNX (onnxruntime) outputs match eager PyTorch within
``fpn_variants.export.TOLERANCES``, at the sample size and at another input size.

The default run exports every backbone three ways, traces and ONNX-exports every detector, and
scripts 4 of the 12 (detector, neck) pairs, which cover every detector and every neck. Set
``FPN_VARIANTS_FULL_EXPORT_TESTS=1`` to script all 12 (about 25 s more on 2 CPU cores).
"""

import functools
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_backbone, build_model

from fpn_variants.export import (
    TOLERANCES,
    differences,
    eager_outputs,
    exceeded_tolerances,
    export_model,
    synthetic_image,
)
from fpn_variants.registry import NECK_BUILDERS

from .utils import make_cfg

ALL_NECKS = sorted(NECK_BUILDERS)
DETECTORS = ["faster_rcnn", "retinanet", "mask_rcnn"]
ALL_PAIRS = [(d, n) for d in DETECTORS for n in ALL_NECKS]
FULL = os.environ.get("FPN_VARIANTS_FULL_EXPORT_TESTS") == "1"
# Scripting a detector compiles all of Detectron2's inference code (~3 s a pair): the default
# run scripts a subset with every detector and every neck.
SCRIPTING_PAIRS = (
    ALL_PAIRS
    if FULL
    else [
        ("faster_rcnn", "build_bifpn_backbone"),
        ("retinanet", "build_nasfpn_backbone"),
        ("mask_rcnn", "build_fpn_backbone"),
        ("mask_rcnn", "build_panet_backbone"),
    ]
)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# torch 2.14 deprecates TorchScript and the TorchScript-based ONNX exporter, which still work; a
# trace warns about every shape branch, which the tests check at other sizes instead.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.[a-z_]+` is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export"),
    pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
]


def backbone_cfg(neck: str, levels: str):
    cfg = make_cfg(neck, levels=levels, channels=16)
    if neck in ("build_bifpn_backbone", "build_nasfpn_backbone"):
        cfg.MODEL.FPN.NORM = "BN"  # as in their papers
        cfg.MODEL.BIFPN.NUM_REPEATS = 2 if neck == "build_bifpn_backbone" else 3
        cfg.MODEL.NASFPN.NUM_REPEATS = 2 if neck == "build_nasfpn_backbone" else 7
    return cfg


def detector_cfg(detector: str, neck: str):
    """Tiny R18 detectors on P2-P6 (R-CNN) or P3-P7 (RetinaNet), as configs/Base-*.yaml."""
    retinanet = detector == "retinanet"
    cfg = backbone_cfg(neck, "p3p7" if retinanet else "p2p6")
    cfg.MODEL.BIFPN.NUM_REPEATS = 1 if neck == "build_bifpn_backbone" else 3
    cfg.MODEL.NASFPN.NUM_REPEATS = 1 if neck == "build_nasfpn_backbone" else 7
    levels = [f"p{i}" for i in (range(3, 8) if retinanet else range(2, 7))]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    cfg.TEST.DETECTIONS_PER_IMAGE = 10
    if retinanet:
        cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
        cfg.MODEL.RETINANET.IN_FEATURES = levels
        cfg.MODEL.RETINANET.NUM_CLASSES = 3
        cfg.MODEL.RETINANET.NUM_CONVS = 1
        cfg.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 50
        # Untrained, every score is near the 0.01 prior: keep them all to have detections.
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = 0.0
        return cfg
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    cfg.MODEL.RPN.IN_FEATURES = levels
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = levels[:-1]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
    if detector == "mask_rcnn":
        cfg.MODEL.MASK_ON = True
        cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
        cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
        cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
        cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    return cfg


@functools.lru_cache(maxsize=None)
def detector(name: str, neck: str):
    torch.manual_seed(0)
    return build_model(detector_cfg(name, neck)).eval()


def assert_matches(model, run, sample):
    expected = eager_outputs(model, sample)
    diffs = differences(expected, run(sample))
    assert set(diffs) <= set(TOLERANCES)
    assert not exceeded_tolerances(diffs), (tuple(sample.shape), diffs)
    if not isinstance(expected, dict):
        assert len(expected) > 0, "no detections: the comparison would be vacuous"
        assert diffs["count"] == 0 and diffs["unmatched"] == 0


# ---------------------------------------------------------------------------------------------
# Backbones (bottom-up network + neck).
# Scripting does not depend on the input size (and test_necks.py scripts every neck too): P3-P7
# only. Tracing and ONNX on both level ranges (P2-P6 has the "maxpool" P6, P3-P7 the P6/P7 convs).
BACKBONE_CASES = [
    (neck, levels, fmt, method)
    for neck in ALL_NECKS
    for levels in ("p2p6", "p3p7")
    for fmt, method in [
        ("torchscript", "scripting"),
        ("torchscript", "tracing"),
        ("onnx", "tracing"),
    ]
    if method == "tracing" or levels == "p3p7"
]


@pytest.mark.parametrize("neck,levels,fmt,method", BACKBONE_CASES)
def test_backbone_export_matches_eager_at_any_size(neck, levels, fmt, method, tmp_path):
    torch.manual_seed(0)
    model = build_backbone(backbone_cfg(neck, levels)).eval()
    run = export_model(model, torch.rand(1, 3, 128, 96), str(tmp_path), fmt=fmt, method=method)
    # The sample size, then sizes that are not multiples of the largest stride, where features
    # are cropped after upsampling and SAME pooling pads differently.
    for shape in [(1, 3, 128, 96), (2, 3, 100, 72), (1, 3, 129, 65)]:
        assert_matches(model, run, torch.rand(*shape))


@pytest.mark.parametrize("upsample", ["bilinear", "deconv"])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_fpn_upsample_modes_export_at_any_size(upsample, fmt, tmp_path):
    cfg = backbone_cfg("build_fpn_backbone", "p3p7")
    cfg.MODEL.FPN.UPSAMPLE = upsample
    torch.manual_seed(0)
    model = build_backbone(cfg).eval()
    run = export_model(model, torch.rand(1, 3, 128, 96), str(tmp_path), fmt=fmt)
    for shape in [(1, 3, 128, 96), (1, 3, 129, 65)]:
        assert_matches(model, run, torch.rand(*shape))


# ---------------------------------------------------------------------------------------------
# Detectors: raw Instances at the network-input resolution (boxes, scores, classes, masks).
@pytest.mark.parametrize("name,neck", ALL_PAIRS)
def test_traced_detector_matches_eager(name, neck, tmp_path):
    model = detector(name, neck)
    run = export_model(model, synthetic_image(128, 128), str(tmp_path), method="tracing")
    assert (tmp_path / "model.ts").is_file() and (tmp_path / "model_ts_IR.txt").is_file()
    assert_matches(model, run, synthetic_image(128, 128))
    assert_matches(model, run, synthetic_image(96, 160, seed=1))  # not the traced size


@pytest.mark.parametrize("name,neck", ALL_PAIRS)
def test_onnx_detector_matches_eager(name, neck, tmp_path):
    model = detector(name, neck)
    run = export_model(model, synthetic_image(128, 128), str(tmp_path), fmt="onnx")
    assert_matches(model, run, synthetic_image(128, 128))
    assert_matches(model, run, synthetic_image(96, 160, seed=1))  # dynamic height and width


@pytest.mark.parametrize("name,neck", SCRIPTING_PAIRS)
def test_scripted_detector_matches_eager(name, neck, tmp_path):
    model = detector(name, neck)
    run = export_model(model, synthetic_image(128, 128), str(tmp_path), method="scripting")
    assert_matches(model, run, synthetic_image(128, 128))
    assert_matches(model, run, synthetic_image(96, 160, seed=1))


def test_onnx_by_scripting_is_refused(tmp_path):
    model = detector("retinanet", "build_fpn_backbone")
    with pytest.raises(ValueError, match="ONNX export traces the model"):
        export_model(model, synthetic_image(), str(tmp_path), fmt="onnx", method="scripting")


def test_export_tool_verifies_against_eager(tmp_path):
    cfg = detector_cfg("retinanet", "build_panet_backbone")
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 96, 160
    config_file = tmp_path / "config.yaml"
    config_file.write_text(cfg.dump())
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "export_model.py")]
        + ["--config-file", str(config_file), "--format", "onnx", "--output", str(tmp_path)]
        + ["MODEL.RETINANET.NUM_CLASSES", "2"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "model.onnx").is_file()
    assert (
        "max difference from eager on a (3, 96, 128) sample (10 detections): count=0" in out.stdout
    )
