"""Faster R-CNN, ResNet-18 + PANet, from scratch on the built-in synthetic data: the LazyConfig twin
of configs/Synthetic/faster_rcnn_R18_PANet.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import panet
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = panet(model.backbone)
train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_PANet"
