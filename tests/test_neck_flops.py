"""benchmarks/neck_flops.py: the neck's fvcore FLOPs split by layer kind add up to the neck's
total, and FPN's 1x1 part is exactly its lateral projections, Cin x Cout x H x W per level."""

import pytest

from fpn_variants.config import load_config
from fpn_variants.necks.base import PyramidNeck

from .utils import load_tool


@pytest.fixture(scope="module")
def neck_flops():
    return load_tool("neck_flops", folder="benchmarks")


def test_fpn_parts_are_its_laterals_outputs_and_merges(neck_flops):
    config = "configs/Synthetic/faster_rcnn_R18_FPN.yaml"
    row = neck_flops.count(config, "faster_rcnn", "fpn", (256, 256))
    assert row.input_size == (256, 256)
    assert sum(row.parts.values()) == pytest.approx(row.neck_total)
    # ResNet-18 C2-C5: 64, 128, 256, 512 channels at strides 4-32; the neck's width from config
    cfg = load_config(config, ["MODEL.DEVICE", "cpu"])  # as the benchmark builds it
    width = cfg.MODEL.FPN.OUT_CHANNELS
    sides = [256 // 2**level for level in (2, 3, 4, 5)]
    laterals = sum(c * width * s * s for c, s in zip((64, 128, 256, 512), sides)) / 1e9
    outputs = sum(width * width * 9 * s * s for s in sides) / 1e9
    assert row.parts["1x1 convs"] == pytest.approx(laterals)
    assert row.parts["3x3 convs"] == pytest.approx(outputs)
    assert row.parts["strided convs"] == 0  # P6 by max-pooling
    assert 0 < row.parts["other"] < 0.01 * row.neck_total  # upsampling and the pooled P6
    assert row.bottom_up > 10 * row.neck_total > 0
    assert issubclass(type(neck_flops.build_backbone(cfg)), PyramidNeck)
