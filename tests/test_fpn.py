"""The original FPN: equivalence with Detectron2's, parameter counts, any input size, errors."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

import fpn_variants
from fpn_variants.optimize import optimize_for_inference

from .utils import make_cfg, set_levels


def _r50_cfg(retinanet: bool):
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    set_levels(cfg, "p3p7" if retinanet else "p2p6")
    return cfg


@pytest.mark.parametrize(
    "d2_builder,retinanet,num_params",
    [
        ("build_resnet_fpn_backbone", False, 26_799_296),
        ("build_retinanet_resnet_fpn_backbone", True, 31_452_352),
    ],
)
def test_detectron2_weights_load_strictly_and_give_the_same_outputs(
    d2_builder, retinanet, num_params
):
    cfg = _r50_cfg(retinanet)
    torch.manual_seed(0)
    theirs = BACKBONE_REGISTRY.get(d2_builder)(cfg, ShapeSpec(channels=3)).eval()
    cfg.MODEL.BACKBONE.NAME = "build_fpn_backbone"
    ours = build_backbone(cfg).eval()
    assert sum(p.numel() for p in ours.parameters()) == num_params
    assert sum(p.numel() for p in theirs.parameters()) == num_params
    ours.load_state_dict(theirs.state_dict(), strict=True)
    # Float32 rounding differences scale with the outputs: the input is scaled so that they are
    # of order 1 (a zero-bias ResNet is positively homogeneous), where 1e-5 is meaningful.
    x = torch.rand(2, 3, 128, 96) * 0.02
    fast = optimize_for_inference(ours)
    with torch.no_grad():
        expected, out = theirs(x), fast(x)
        assert 0.1 < max(v.abs().max() for v in expected.values()) < 10
        assert list(out) == list(expected)
        for name in expected:
            assert (out[name] - expected[name]).abs().max() <= 1e-5, name
        # The plain model runs Detectron2's very kernels in the same order: identical outputs.
        exact = ours(x * 50)
        for name, value in theirs(x * 50).items():
            assert torch.equal(exact[name], value), name
    assert ours.output_shape() == theirs.output_shape()
    assert ours.size_divisibility == theirs.size_divisibility


@pytest.mark.parametrize("fuse_type,norm", [("avg", ""), ("sum", "GN")])
def test_detectron2_equivalence_with_avg_fusion_and_norm(fuse_type, norm):
    from detectron2.modeling.backbone.fpn import FPN as D2FPN
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    cfg = make_cfg(channels=64)  # GN (32 groups) needs two channels per group
    cfg.MODEL.FPN.FUSE_TYPE, cfg.MODEL.FPN.NORM = fuse_type, norm
    ours = build_backbone(cfg).eval()
    theirs = D2FPN(
        bottom_up=ours.bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=64,
        norm=norm,
        top_block=LastLevelMaxPool(),
        fuse_type=fuse_type,
    ).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected, out = theirs(x), ours(x)
    for name in expected:
        assert (out[name] - expected[name]).abs().max() <= 1e-5, name


@pytest.mark.parametrize("levels", ["p2p6", "p3p7"])
@pytest.mark.parametrize("size", [(64, 64), (65, 65), (333, 517), (1000, 97), (97, 1000)])
def test_output_shape_matches_real_tensors_at_any_size(levels, size):
    model = build_backbone(make_cfg(levels=levels)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))
    shapes = model.output_shape()
    assert list(out) == list(shapes)
    for name, spec in shapes.items():
        assert name == f"p{spec.stride.bit_length() - 1}"
        expected = (1, spec.channels, -(-size[0] // spec.stride), -(-size[1] // spec.stride))
        assert tuple(out[name].shape) == expected, name


@pytest.mark.parametrize(
    "num_extra_levels,top_block_in,names",
    [(0, "res5", ["p3", "p4", "p5"]), (2, "p5", ["p3", "p4", "p5", "p6", "p7"])],
)
def test_extra_level_options(num_extra_levels, top_block_in, names):
    cfg = make_cfg(levels="p3p7")  # "conv" extra levels
    cfg.MODEL.FPN.NUM_EXTRA_LEVELS, cfg.MODEL.FPN.TOP_BLOCK_IN = num_extra_levels, top_block_in
    cfg.MODEL.RETINANET.IN_FEATURES = names
    model = build_backbone(cfg)
    assert list(model.output_shape()) == names
    if top_block_in == "p5":  # P6 is computed from the 32-channel P5, not the 512-channel C5
        p6_conv = model.cells[0].nodes[-2].edges[0].conv
        assert p6_conv.in_channels == 32


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "deconv"])
def test_every_parameter_gets_a_gradient(upsample):
    cfg = make_cfg(levels="p3p7")
    cfg.MODEL.FPN.UPSAMPLE = upsample
    model = build_backbone(cfg).train()
    out = model(torch.rand(2, 3, 96, 80))
    sum(v.square().mean() for v in out.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize(
    "key,value,error,message",
    [
        ("MODEL.FPN.TOP_BLOCK", "p6", ValueError, "MODEL.FPN.TOP_BLOCK='p6' is not one of"),
        ("MODEL.FPN.TOP_BLOCK_IN", "res4", ValueError, "MODEL.FPN.TOP_BLOCK_IN='res4'"),
        ("MODEL.FPN.UPSAMPLE", "cubic", ValueError, "MODEL.FPN.UPSAMPLE='cubic' is not one of"),
        ("MODEL.FPN.FUSE_TYPE", "max", ValueError, "MODEL.FPN.FUSE_TYPE='max' is not one of"),
        ("MODEL.FPN.NORM", "XN", ValueError, "MODEL.FPN.NORM='XN' is not one of"),
        ("MODEL.FPN.IN_FEATURES", ["res3", "res5"], ValueError, "must be powers of two that"),
        ("MODEL.FPN.IN_FEATURES", ["res3", "res6"], ValueError, "features the bottom-up network"),
        ("MODEL.FPN.OUT_CHANNELS", 0, ValueError, "OUT_CHANNELS=0 must be at least 1"),
        ("MODEL.BACKBONE.BOTTOM_UP", "build_resnet", KeyError, "is not registered"),
        ("MODEL.BACKBONE.BOTTOM_UP", "build_fpn_backbone", ValueError, "is a neck"),
    ],
)
def test_bad_config_values_raise_errors_that_name_the_key(key, value, error, message):
    cfg = make_cfg(levels="p3p7")
    cfg.merge_from_list([key, value])
    with pytest.raises(error, match=message.replace("[", r"\[")):
        build_backbone(cfg)


def test_flops_of_the_plain_model_equal_detectron2s():
    """fvcore FLOPs of our FPN in eval mode equal Detectron2's FPN's."""
    from detectron2.modeling.backbone.fpn import FPN as D2FPN
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    from fpn_variants.analysis import count_flops, count_neck_flops

    ours = build_backbone(make_cfg(channels=32)).eval()
    theirs = D2FPN(
        bottom_up=ours.bottom_up,
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=32,
        top_block=LastLevelMaxPool(),
    ).eval()
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        features = ours.bottom_up(x)
    bottom_up = count_flops(ours.bottom_up, (x,))
    assert count_neck_flops(ours, features) == count_flops(theirs, (x,)) - bottom_up > 0
