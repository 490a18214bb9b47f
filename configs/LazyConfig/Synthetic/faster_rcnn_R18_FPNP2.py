"""Faster R-CNN, ResNet-18, FPN paper ablation: only the FPN's finest level P2 (Table 2 (f)); the
LazyConfig twin of configs/Synthetic/faster_rcnn_R18_FPNP2.yaml."""

from fpn_variants.necks import FinestLevelFPN

from ..common.models.faster_rcnn import on_one_level
from ..common.necks import swap_neck
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone = swap_neck(model.backbone, FinestLevelFPN, num_extra_levels=0)
on_one_level(model, 2, pre_nms_topk=2500)  # the 5 x 500 candidates of the P2-P6 configs
train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_FPNP2"
