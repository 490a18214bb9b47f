"""Mask R-CNN, ResNet-18 + BiFPN, from scratch on the built-in synthetic data: the LazyConfig twin
of configs/Synthetic/mask_rcnn_R18_BiFPN.yaml (the FPN file with another ``model.backbone``)."""

from detectron2.config import LazyCall as L

from fpn_variants import BiFPN
from fpn_variants.necks.base import TOP_BLOCKS as _TOP_BLOCKS  # "_": not a config key

from .mask_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = L(BiFPN)(
    bottom_up=model.backbone.bottom_up,
    in_features="${.bottom_up.out_features}",
    out_channels=model.backbone.out_channels,
    # the FPN's top block as a number of levels made by max-pooling, as the YAML builders do
    num_extra_levels=_TOP_BLOCKS[model.backbone.top_block],
    norm="BN",  # batch norm in the neck, as in the paper
)
train.output_dir = "output/lazyconfig/synthetic/mask_rcnn_R18_BiFPN"
