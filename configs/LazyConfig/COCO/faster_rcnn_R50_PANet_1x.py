"""Faster R-CNN R50 with PANet instead of FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/faster_rcnn_R50_PANet_1x.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import panet
from .faster_rcnn_R50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = panet(model.backbone)
train.output_dir = "output/lazyconfig/coco/faster_rcnn_R50_PANet_1x"
