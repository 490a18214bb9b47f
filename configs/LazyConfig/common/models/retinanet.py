"""RetinaNet on a feature pyramid P3-P7: configs/Base-RetinaNet.yaml with Detectron2's default
values (ResNet-50 with frozen BN and frozen stem + res2, 256 channels, COCO's 80 classes).

As in ``faster_rcnn.py``, the head reads its channels from ``model.backbone.out_channels`` and
the anchor strides follow from the level numbers.
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import RetinaNet
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

from fpn_variants import FPN

_LEVELS = [3, 4, 5, 6, 7]
_ASPECT_RATIOS = [0.5, 1.0, 2.0]
_SCALES = [2 ** (k / 3) for k in range(3)]  # 3 anchor sizes per octave

model = L(RetinaNet)(
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="${..stages.norm}"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features="${.bottom_up.out_features}",
        out_channels=256,
        num_extra_levels=2,  # P6 from res5 by a stride-2 conv, P7 from P6
        extra_level_type="conv",
    ),
    head=L(RetinaNetHead)(
        # One shape per level: a BN head has one set of statistics per level.
        input_shape=[L(ShapeSpec)(channels="${....backbone.out_channels}") for _ in _LEVELS],
        num_classes="${..num_classes}",
        conv_dims=["${..input_shape[0].channels}"] * 4,
        prior_prob=0.01,
        num_anchors=len(_SCALES) * len(_ASPECT_RATIOS),
    ),
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[x * s for s in _SCALES] for x in [32, 64, 128, 256, 512]],
        aspect_ratios=[_ASPECT_RATIOS],
        strides=[2**lvl for lvl in _LEVELS],
        offset=0.0,
    ),
    box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
    anchor_matcher=L(Matcher)(
        thresholds=[0.4, 0.5], labels=[0, -1, 1], allow_low_quality_matches=True
    ),
    num_classes=80,
    head_in_features=[f"p{lvl}" for lvl in _LEVELS],
    focal_loss_alpha=0.25,
    focal_loss_gamma=2.0,
    smooth_l1_beta=0.0,
    pixel_mean=[103.53, 116.28, 123.675],  # BGR, the MSRA ImageNet weights' statistics
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
