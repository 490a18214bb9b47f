"""Faster R-CNN, ResNet-18 + BiFPN, from scratch on the built-in synthetic data: the LazyConfig twin
of configs/Synthetic/faster_rcnn_R18_BiFPN.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import bifpn
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# group norm in the neck: batch norm over 4 images fails the stacked necks (as the YAML)
model.backbone = bifpn(model.backbone, norm="GN")
model.backbone.num_repeats = 3  # as in the paper
train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_BiFPN"
