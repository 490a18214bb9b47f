"""Faster R-CNN R50-FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/faster_rcnn_R50_FPN_1x.yaml. The files of the other necks import this one and
replace ``model.backbone``."""

from ..common.coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from ..common.models.faster_rcnn import model  # noqa: F401

dataloader.train.mapper.use_instance_mask = False
train.output_dir = "output/lazyconfig/coco/faster_rcnn_R50_FPN_1x"
