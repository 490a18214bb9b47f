"""Faster R-CNN R50 with PANet instead of FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/faster_rcnn_R50_PANet_1x.yaml (the FPN file with another ``model.backbone``)."""

from detectron2.config import LazyCall as L

from fpn_variants import PANet

from .faster_rcnn_R50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = L(PANet)(
    bottom_up=model.backbone.bottom_up,
    in_features="${.bottom_up.out_features}",
    out_channels=model.backbone.out_channels,
    top_block=model.backbone.top_block,
)
train.output_dir = "output/lazyconfig/coco/faster_rcnn_R50_PANet_1x"
