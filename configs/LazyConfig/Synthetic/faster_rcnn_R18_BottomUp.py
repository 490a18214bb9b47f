"""Faster R-CNN, ResNet-18, FPN paper ablation: the bottom-up pyramid (Table 2 (d)); the LazyConfig
twin of configs/Synthetic/faster_rcnn_R18_BottomUp.yaml."""

from fpn_variants.necks import BottomUpPyramid

from ..common.necks import swap_neck
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = swap_neck(model.backbone, BottomUpPyramid)
train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_BottomUp"
