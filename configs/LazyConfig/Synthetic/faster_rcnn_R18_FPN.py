"""Faster R-CNN, ResNet-18 + FPN, from scratch on the built-in synthetic data (CPU): the
LazyConfig twin of configs/Synthetic/faster_rcnn_R18_FPN.yaml. The files of the other necks
import this one and replace ``model.backbone``."""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import ResNet

from ..common.models.faster_rcnn import model
from ..common.synthetic import dataloader, lr_multiplier, optimizer, train  # noqa: F401

# ResNet-18 from scratch: trainable BN (FrozenBN needs pretrained statistics), no frozen stage.
model.backbone.bottom_up.stages = L(ResNet.make_default_stages)(depth=18, norm="BN")
model.backbone.bottom_up.freeze_at = 0
model.backbone.out_channels = 64
# torchvision's ImageNet statistics (in BGR): unit-variance inputs for a from-scratch network.
model.pixel_std = [57.375, 57.12, 58.395]

# Objects are 12-200 px wide; COCO's anchors start at 32.
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
# ~7 objects per image need few proposals (pre-NMS: per level).
model.proposal_generator.pre_nms_topk = [500, 500]
model.proposal_generator.post_nms_topk = [500, 100]
model.roi_heads.num_classes = 6
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.fc_dims = [512, 512]
# At most 2x2 samples per bin: adaptive sampling (0) makes ROIAlign's CPU backward slow for
# large boxes.
model.roi_heads.box_pooler.sampling_ratio = 2
# RoI level rule scaled to the image size, 224 x 256 / 800: boxes of s = sqrt(wh) px are pooled
# from P2 (s < 36), P3 (< 72), P4 (< 144) or P5 (MODEL.ROI_HEADS.CANONICAL_BOX_SIZE).
model.roi_heads.box_pooler.canonical_box_size = 72

train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_FPN"
