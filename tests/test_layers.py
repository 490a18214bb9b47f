"""Shared blocks: SAME pooling, upsampling to exact sizes, fusion math, graph validation."""

import pytest
import torch
import torch.nn.functional as F

from fpn_variants.layers import (
    FusionGraph,
    MaxPoolSame,
    NodeSpec,
    Resample,
    Upsample,
    build_conv,
    build_fusion,
    get_norm_layer,
)
from fpn_variants.layers.conv import conv1x1_to_channels_last


def tf_same_max_pool(x, kernel, stride):
    """Reference: explicit TF "SAME" padding with -inf, extra pixel after, then a plain pool."""
    pads = []
    for length in (x.shape[-1], x.shape[-2]):
        out = -(-length // stride)
        total = max((out - 1) * stride + kernel - length, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (4, 4), (8, 8), (1, 2), (5, 4)])
@pytest.mark.parametrize("size", [(8, 8), (7, 9), (13, 6), (1, 5), (33, 17)])
def test_max_pool_same_matches_tf_padding(kernel, stride, size):
    x = torch.randn(2, 3, *size)
    expected = tf_same_max_pool(x, kernel, stride)
    target = [-(-size[0] // stride), -(-size[1] // stride)]
    out = MaxPoolSame(kernel, stride)(x, target)
    assert out.shape == expected.shape
    assert torch.equal(out, expected)


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("size", [(16, 16), (13, 27), (5, 3)])
def test_nearest_upsample_is_scale_then_crop(factor, size):
    coarse = torch.randn(1, 2, -(-size[0] // factor), -(-size[1] // factor))
    out = Upsample(factor, "nearest")(coarse, list(size))
    expected = coarse.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    assert torch.equal(out, expected[:, :, : size[0], : size[1]])


@pytest.mark.parametrize("mode", ["bilinear", "deconv"])
def test_other_upsample_modes_hit_the_target_size(mode):
    up = Upsample(2, mode, channels=4)
    assert up(torch.randn(1, 4, 7, 5), [13, 9]).shape == (1, 4, 13, 9)


def test_unknown_upsample_mode_names_the_key():
    with pytest.raises(ValueError, match="upsample='cubic' is not one of"):
        Upsample(2, "cubic")


def test_fusion_math_against_hand_computed_values():
    a, b, c = (
        torch.full((1, 1, 2, 2), 1.0),
        torch.full((1, 1, 2, 2), 2.0),
        torch.full((1, 1, 2, 2), 4.0),
    )
    assert torch.allclose(build_fusion("sum", 3)([a, b, c]), torch.full_like(a, 7.0))
    assert torch.allclose(build_fusion("avg", 3)([a, b, c]), torch.full_like(a, 7.0 / 3))

    fast = build_fusion("fast_normalized", 3)
    with torch.no_grad():
        fast.edge_weights.copy_(torch.tensor([1.0, -5.0, 3.0]))  # ReLU drops the negative weight
    expected = (1.0 * 1 + 3.0 * 4) / (1.0 + 3.0 + 1e-4)
    assert torch.allclose(fast([a, b, c]), torch.full_like(a, expected))

    soft = build_fusion("softmax", 2)
    with torch.no_grad():
        soft.edge_weights.copy_(torch.tensor([0.0, 1.0]))
    w = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    assert torch.allclose(soft([a, b]), w[0] * a + w[1] * b)


def test_fast_normalized_weights_start_equal():
    fusion = build_fusion("fast_normalized", 2)
    assert torch.equal(fusion.edge_weights.detach(), torch.ones(2))
    x = torch.randn(1, 3, 4, 4)
    assert torch.allclose(fusion([x, x]), x * 2 / (2 + 1e-4))


@pytest.mark.parametrize("pool,gate", [("max", 0), ("avg", 1)])
def test_global_attention(pool, gate):
    xs = [torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)]
    a, b = xs[gate], xs[1 - gate]
    pooled = a.amax(dim=(2, 3), keepdim=True) if pool == "max" else a.mean(dim=(2, 3), keepdim=True)
    out = build_fusion("global_attention", 2, gate_index=gate, pool=pool)(xs)
    assert torch.allclose(out, a + b * torch.sigmoid(pooled))


def test_bad_fusion_arguments_raise():
    with pytest.raises(ValueError, match="fusion='mean' is not one of"):
        build_fusion("mean", 2)
    with pytest.raises(ValueError, match="merges 2 inputs"):
        build_fusion("global_attention", 3)


def test_norm_and_activation_errors_list_the_choices():
    with pytest.raises(ValueError, match="norm='XN' is not one of"):
        get_norm_layer("XN", 32)
    with pytest.raises(ValueError, match="multiple of 32"):
        get_norm_layer("GN", 48)
    with pytest.raises(ValueError, match="activation='tanh' is not one of"):
        build_conv(8, 8, 3, activation="tanh")


def test_bn_settings_follow_the_arguments():
    bn = get_norm_layer("BN", 8, eps=1e-3, momentum=0.01)
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def test_separable_conv_shapes_and_bias_rule():
    conv = build_conv(8, 16, 3, separable=True, stride=2, norm="BN")
    assert conv(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)
    assert conv.pointwise.bias is None  # bias only without norm, unless asked for
    assert build_conv(8, 16, 3, separable=True, norm="BN", bias=True).pointwise.bias is not None


def _graph(nodes, passthrough=()):
    return FusionGraph(
        [3, 4],
        [4, 4],
        nodes,
        channels=4,
        min_level=3,
        make_edge=lambda e: Resample(spatial=Upsample(2) if e.src_level > e.dst_level else None),
        make_fusion=lambda k, n, levels: build_fusion(n.fusion, len(n.inputs)),
        make_post=lambda k, n: None,
        passthrough=passthrough,
    )


def test_graph_runs_nodes_in_order_and_sorts_outputs():
    nodes = [NodeSpec(level=3, inputs=(0, 1), is_output=True, post=False)]
    graph = _graph(nodes, passthrough=(1,))
    p3, p4 = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4, 4)
    out = graph([p3, p4], [[8, 8], [4, 4]])
    assert graph.output_levels == [3, 4]
    assert torch.equal(out[0], p3 + F.interpolate(p4, scale_factor=2.0))
    assert out[1] is p4


def test_graph_rejects_bad_tables():
    with pytest.raises(ValueError, match="reads feature 5, which does not exist"):
        _graph([NodeSpec(level=3, inputs=(0, 5))])
    with pytest.raises(ValueError, match="two outputs at level 3"):
        _graph([NodeSpec(level=3, inputs=(0,), is_output=True)], passthrough=(0,))
    with pytest.raises(ValueError, match="residuals must be of the same level"):
        _graph([NodeSpec(level=3, inputs=(0,), residuals=(1,))])


@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_as_gemm_gives_nhwc_output(bias):
    x = torch.randn(2, 24, 7, 5)
    conv = torch.nn.Conv2d(24, 16, 1, bias=bias)
    out = conv1x1_to_channels_last(x, conv.weight, conv.bias)
    assert out.shape == (2, 16, 7, 5)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert (out - conv(x)).abs().max() <= 1e-5
