"""fpn_variants.roi_align computes torchvision's RoIAlign: the same outputs and input gradients
(to float rounding), on boxes inside, across and outside the map, for every sampling rule; the
R-CNN poolers built from configs use it for training and torchvision's kernel otherwise."""

import os

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ROIAlign as Detectron2ROIAlign
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from torchvision.ops import roi_align as torchvision_roi_align

import fpn_variants
from fpn_variants.roi_align import ROIAlign, roi_align

from .utils import make_cfg

ROOT = os.path.join(os.path.dirname(__file__), "..")


def random_case(gen, dtype, sampling_ratio, aligned, num_rois):
    """A feature map and RoIs of every kind: inside, partly or fully outside the map, tiny,
    larger than the map, degenerate (zero or, with a fixed sampling ratio, negative size)."""
    n, c = 2, 3
    h, w = int(torch.randint(1, 30, (), generator=gen)), int(
        torch.randint(1, 30, (), generator=gen)
    )
    scale = 0.25
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype, requires_grad=True)
    size = torch.tensor([w / scale, h / scale], dtype=dtype)
    xy1 = torch.rand(num_rois, 2, generator=gen, dtype=dtype) * size * 1.5 - 0.25 * size
    wh = torch.rand(num_rois, 2, generator=gen, dtype=dtype) * size * 1.2
    if sampling_ratio > 0:  # torchvision's adaptive rule fails on negative sizes, a fixed one not
        wh[::5] = -wh[::5] * 0.1
    wh[1::7] = 0.0
    batch = torch.randint(0, n, (num_rois, 1), generator=gen).to(dtype)
    return x, torch.cat([batch, xy1, xy1 + wh], dim=1), scale


@pytest.mark.parametrize("sampling_ratio", [0, 2, 3])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_outputs_and_gradients_as_torchvision(sampling_ratio, aligned, dtype):
    gen = torch.Generator().manual_seed(sampling_ratio * 2 + aligned)
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    for num_rois in (0, 1, 7, 40):
        x, rois, scale = random_case(gen, dtype, sampling_ratio, aligned, num_rois)
        args = ((5, 4), scale, sampling_ratio, aligned)
        expected = torchvision_roi_align(x, rois, *args)
        actual = roi_align(x, rois, *args)
        assert actual.shape == expected.shape and actual.is_contiguous()
        grad_out = torch.randn(expected.shape, generator=gen, dtype=dtype)
        (expected_grad,) = torch.autograd.grad(expected, x, grad_out)
        (actual_grad,) = torch.autograd.grad(actual, x, grad_out)
        assert actual_grad.shape == x.shape and actual_grad.is_contiguous()
        if num_rois == 0:
            assert actual_grad.abs().max() == 0
            continue
        assert (actual - expected).abs().max() <= tol * expected.abs().max()
        assert (actual_grad - expected_grad).abs().max() <= tol * expected_grad.abs().max()


def test_boxes_partly_outside_and_the_map_border():
    """Samples in [-1, 0] and [H - 1, H] take the border row; beyond, they weigh nothing."""
    x = torch.randn(1, 2, 6, 5, requires_grad=True)
    rois = torch.tensor(
        [
            [0, -3.0, -3.0, 2.0, 2.0],  # top-left corner, most samples outside
            [0, 3.5, 4.5, 6.5, 8.0],  # bottom-right corner
            [0, -10.0, 1.0, -4.0, 3.0],  # fully left of the map: all samples dropped
            [0, 0.0, 0.0, 5.0, 6.0],  # the whole map
        ]
    )
    for sampling_ratio in (0, 2):
        args = ((3, 3), 1.0, sampling_ratio, True)
        expected = torchvision_roi_align(x, rois, *args)
        actual = roi_align(x, rois, *args)
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
        assert actual[2].abs().max() == 0
        grads = [torch.autograd.grad(out.sum(), x)[0] for out in (expected, actual)]
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-6)


def test_windows_of_very_different_sizes():
    """RoIs of a few pixels and RoIs as large as the map, pooled in one call (several window
    groups), on a channels-last input."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, 40, 50, generator=gen).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    boxes = [[0, 1, 1, 3, 2], [1, 0, 0, 50, 40], [2, 10, 5, 12, 38], [0, 2, 30, 48, 33]]
    rois = torch.tensor(boxes, dtype=torch.float32).repeat(5, 1)
    rois[:, 1:] += torch.rand(20, 4, generator=gen)
    for sampling_ratio in (0, 2):
        args = ((7, 7), 1.0, sampling_ratio, True)
        expected = torchvision_roi_align(x, rois, *args)
        actual = roi_align(x, rois, *args)
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
        grad_out = torch.randn(expected.shape, generator=gen)
        grads = [torch.autograd.grad(out, x, grad_out)[0] for out in (expected, actual)]
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)


def test_module_uses_torchvision_without_grad():
    """Inference (no grad) is torchvision's kernel, bit for bit; training is ours."""
    op = ROIAlign((7, 7), 0.25, 0, True)
    x = torch.randn(1, 4, 16, 16)
    rois = torch.tensor([[0, 3.0, 4.0, 40.0, 30.0]])
    with torch.no_grad():
        assert torch.equal(op(x, rois), torchvision_roi_align(x, rois, (7, 7), 0.25, 0, True))
    out = op(x.requires_grad_(), rois)
    assert type(out.grad_fn).__name__ == "_ROIAlignFunctionBackward"


def rcnn_cfg():
    cfg = fpn_variants.add_fpn_variants_config(make_cfg())
    cfg.MODEL.ROI_HEADS.NAME = "PyramidROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    return cfg


def test_rcnn_poolers_from_yaml_and_lazyconfig_use_it():
    cfg = rcnn_cfg()
    cfg.MODEL.MASK_ON = True
    model = build_model(cfg)
    for pooler in (model.roi_heads.box_pooler, model.roi_heads.mask_pooler):
        assert all(type(op) is ROIAlign for op in pooler.level_poolers)
        assert [op.spatial_scale for op in pooler.level_poolers] == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    lazy = LazyConfig.load(os.path.join(ROOT, "configs/LazyConfig/Synthetic/mask_rcnn_R18_FPN.py"))
    model = instantiate(lazy.model)
    for pooler in (model.roi_heads.box_pooler, model.roi_heads.mask_pooler):
        assert all(type(op) is ROIAlign for op in pooler.level_poolers)
    # Detectron2's own heads keep Detectron2's op.
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    pooler = build_model(cfg).roi_heads.box_pooler
    assert all(type(op) is Detectron2ROIAlign for op in pooler.level_poolers)


def test_pooler_output_and_gradient_match_detectron2s():
    """A whole multi-level ROIPooler with our op against the same pooler with Detectron2's."""
    cfg = rcnn_cfg()
    cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = 48
    pooler = build_model(cfg).roi_heads.box_pooler
    gen = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 8, 128 // 2**k, 128 // 2**k, generator=gen) for k in (2, 3, 4, 5)]
    xy = torch.rand(2, 60, 2, generator=gen) * 100
    wh = torch.rand(2, 60, 2, generator=gen) ** 2 * 120 + 1
    boxes = [Boxes(torch.cat([xy[i], xy[i] + wh[i]], 1)) for i in range(2)]
    outputs, grads = [], []
    for op_type in (ROIAlign, Detectron2ROIAlign):
        pooler.level_poolers = torch.nn.ModuleList(
            op_type(op.output_size, op.spatial_scale, op.sampling_ratio, op.aligned)
            for op in pooler.level_poolers
        )
        inputs = [f.clone().requires_grad_() for f in feats]
        out = pooler(inputs, boxes)
        outputs.append(out)
        grads.append(torch.autograd.grad((out * out).sum(), inputs))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
