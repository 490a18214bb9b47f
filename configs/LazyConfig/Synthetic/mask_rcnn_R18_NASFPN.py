"""Mask R-CNN, ResNet-18 + NAS-FPN, from scratch on the built-in synthetic data: the LazyConfig twin
of configs/Synthetic/mask_rcnn_R18_NASFPN.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import nasfpn
from .mask_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# group norm in the neck: batch norm over 4 images fails the stacked necks (as the YAML)
model.backbone = nasfpn(model.backbone, norm="GN")
model.backbone.num_repeats = 7  # as in the paper
train.output_dir = "output/lazyconfig/synthetic/mask_rcnn_R18_NASFPN"
