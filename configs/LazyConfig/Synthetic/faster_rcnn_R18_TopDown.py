"""Faster R-CNN, ResNet-18, FPN paper ablation: the top-down pyramid without
laterals (Table 2 (e)); the LazyConfig twin of
configs/Synthetic/faster_rcnn_R18_TopDown.yaml."""

from fpn_variants.necks import TopDownPyramid

from ..common.necks import swap_neck
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = swap_neck(model.backbone, TopDownPyramid)
train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_TopDown"
