"""Faster R-CNN R50 with NAS-FPN instead of FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/faster_rcnn_R50_NASFPN_1x.yaml (the FPN file with another ``model.backbone``)."""

from detectron2.config import LazyCall as L

from fpn_variants import NASFPN
from fpn_variants.necks.base import TOP_BLOCKS as _TOP_BLOCKS  # "_": not a config key

from .faster_rcnn_R50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = L(NASFPN)(
    bottom_up=model.backbone.bottom_up,
    in_features="${.bottom_up.out_features}",
    out_channels=model.backbone.out_channels,
    # the FPN's top block as a number of levels made by max-pooling, as the YAML builders do
    num_extra_levels=_TOP_BLOCKS[model.backbone.top_block],
    norm="SyncBN",  # batch norm in the neck, synchronized across GPUs, as in the paper
)
train.output_dir = "output/lazyconfig/coco/faster_rcnn_R50_NASFPN_1x"
