"""Mask R-CNN, ResNet-18 + BiFPN, from scratch on the built-in synthetic data: the LazyConfig twin
of configs/Synthetic/mask_rcnn_R18_BiFPN.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import bifpn
from .mask_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = bifpn(model.backbone, norm="BN")  # batch norm in the neck, as in the paper
model.backbone.num_repeats = 1  # as the YAML: stacked cells do not learn in this short schedule
train.output_dir = "output/lazyconfig/synthetic/mask_rcnn_R18_BiFPN"
