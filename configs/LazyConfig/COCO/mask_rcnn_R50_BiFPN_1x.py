"""Mask R-CNN R50 with BiFPN instead of FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/mask_rcnn_R50_BiFPN_1x.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import bifpn
from .mask_rcnn_R50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# batch norm in the neck, synchronized across GPUs, as in the paper
model.backbone = bifpn(model.backbone, norm="SyncBN")
train.output_dir = "output/lazyconfig/coco/mask_rcnn_R50_BiFPN_1x"
