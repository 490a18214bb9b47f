"""Faster R-CNN on a feature pyramid P2-P6: configs/Base-FasterRCNN.yaml with Detectron2's default
values (ResNet-50 with frozen BN and frozen stem + res2, 256 channels, COCO's 80 classes).

The backbone is fpn_variants' FPN; a leaf config swaps it for another neck by replacing
``model.backbone``. Head geometry is never restated: the heads read their channels from
``model.backbone.out_channels`` (interpolation), and anchor strides and pooler scales follow from
the level numbers below (``p<l>`` has stride ``2**l`` in every fpn_variants neck, whose own
geometry comes from the bottom-up network's ``output_shape()``).
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers

from fpn_variants import FPN
from fpn_variants.roi_heads import PyramidROIHeads

# Levels read by the RPN (P6, max-pooled P5, feeds the RPN only) and by the ROI heads.
_RPN_LEVELS = [2, 3, 4, 5, 6]
_ROI_LEVELS = [2, 3, 4, 5]
_ASPECT_RATIOS = [0.5, 1.0, 2.0]

model = L(GeneralizedRCNN)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="${..stages.norm}"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res2", "res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        num_extra_levels=1,  # P6 = stride-2 subsampling of P5
        extra_level_type="maxpool",
    ),
    proposal_generator=L(RPN)(
        in_features=[f"p{lvl}" for lvl in _RPN_LEVELS],
        head=L(StandardRPNHead)(
            in_channels="${...backbone.out_channels}",
            num_anchors=len(_ASPECT_RATIOS),  # one size per level
        ),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[32], [64], [128], [256], [512]],
            aspect_ratios=[_ASPECT_RATIOS],
            strides=[2**lvl for lvl in _RPN_LEVELS],
            offset=0.0,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=[2000, 1000],  # per level, (training, test)
        post_nms_topk=[1000, 1000],
        nms_thresh=0.7,
    ),
    roi_heads=L(PyramidROIHeads)(
        num_classes=80,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=L(Matcher)(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        box_in_features=[f"p{lvl}" for lvl in _ROI_LEVELS],
        box_pooler=L(ROIPooler)(
            output_size=7,
            scales=[1.0 / 2**lvl for lvl in _ROI_LEVELS],
            sampling_ratio=0,
            pooler_type="ROIAlignV2",
            # RoI level rule floor(k0 + log2(sqrt(wh) / s0)): the FPN paper's s0 = 224, k0 = 4
            canonical_box_size=224,
            canonical_level=4,
        ),
        box_head=L(FastRCNNConvFCHead)(
            input_shape=L(ShapeSpec)(
                channels="${....backbone.out_channels}",
                height="${...box_pooler.output_size}",
                width="${...box_pooler.output_size}",
            ),
            conv_dims=[],
            fc_dims=[1024, 1024],
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            # Output of the box head: its last (second) FC layer.
            input_shape=L(ShapeSpec)(channels="${...box_head.fc_dims[1]}"),
            test_score_thresh=0.05,
            box2box_transform=L(Box2BoxTransform)(weights=[10.0, 10.0, 5.0, 5.0]),
            num_classes="${..num_classes}",
            loss_weight={"loss_box_reg": 1.0},
        ),
    ),
    pixel_mean=[103.53, 116.28, 123.675],  # BGR, the MSRA ImageNet weights' statistics
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)


def on_one_level(model, level: int, pre_nms_topk: int) -> None:
    """Put the RPN's anchors of every size and the box head's RoIs on the one level ``level``
    (the FPN paper's single-scale and finest-level baselines), in place; ``pre_nms_topk``
    candidates per image, in training and test."""
    rpn = model.proposal_generator
    rpn.in_features = [f"p{level}"]
    rpn.anchor_generator.sizes = [[s for sizes in rpn.anchor_generator.sizes for s in sizes]]
    ratios = rpn.anchor_generator.aspect_ratios[0]
    rpn.head.num_anchors = len(rpn.anchor_generator.sizes[0]) * len(ratios)
    rpn.anchor_generator.strides = [2**level]
    rpn.pre_nms_topk = [pre_nms_topk, pre_nms_topk]
    model.roi_heads.box_in_features = [f"p{level}"]
    model.roi_heads.box_pooler.scales = [1.0 / 2**level]
