"""RetinaNet, ResNet-18 + FPN, from scratch on the built-in synthetic data (CPU): the LazyConfig
twin of configs/Synthetic/retinanet_R18_FPN.yaml. The files of the other necks import this one
and replace ``model.backbone``."""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import ResNet

from ..common.models.retinanet import model
from ..common.synthetic import dataloader, lr_multiplier, optimizer, train  # noqa: F401

# ResNet-18 from scratch: trainable BN (FrozenBN needs pretrained statistics), no frozen stage.
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="BN")
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 64
# torchvision's ImageNet statistics (in BGR): unit-variance inputs for a from-scratch network.
model.pixel_std = [57.375, 57.12, 58.395]

# x * 2^(k/3), x = 16..256 on P3-P7: objects are 12-200 px wide; COCO's start at 32.
model.anchor_generator.sizes = [
    [x * 2 ** (k / 3) for k in range(3)] for x in [16, 32, 64, 128, 256]
]
model.num_classes = 6
# One conv (not 4) per head branch: a deep head initialized with std 0.01 learns too slowly
# from scratch in 250 iterations.
model.head.conv_dims = ["${..input_shape[0].channels}"]
model.head.norm = "BN"  # one BatchNorm per level (Detectron2's CycleBatchNormList)
model.test_topk_candidates = 300

train.max_iter = 190  # RetinaNet steps are ~20% cheaper: 190 fit the Faster R-CNN time (150)
lr_multiplier.warmup_length = 50 / train.max_iter
train.output_dir = "output/lazyconfig/synthetic/retinanet_R18_FPN"
