"""RetinaNet, ResNet-18 + PANet, from scratch on the built-in synthetic data: the LazyConfig twin of
configs/Synthetic/retinanet_R18_PANet.yaml (the FPN file with another ``model.backbone``)."""

from detectron2.config import LazyCall as L

from fpn_variants import PANet

from .retinanet_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = L(PANet)(
    bottom_up=model.backbone.bottom_up,
    in_features="${.bottom_up.out_features}",
    out_channels=model.backbone.out_channels,
    top_block=model.backbone.top_block,
)
train.output_dir = "output/lazyconfig/synthetic/retinanet_R18_PANet"
