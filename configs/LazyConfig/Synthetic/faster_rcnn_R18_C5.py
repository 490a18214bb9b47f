"""Faster R-CNN, ResNet-18, single-scale baseline on C5 (FPN paper, Table 3): the LazyConfig twin of
configs/Synthetic/faster_rcnn_R18_C5.yaml."""

from fpn_variants.necks import SingleScale

from ..common.models.faster_rcnn import on_one_level
from ..common.necks import swap_neck
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.bottom_up.out_features = ["res5"]
model.backbone = swap_neck(model.backbone, SingleScale, num_extra_levels=0)
on_one_level(model, 5, pre_nms_topk=2500)  # the 5 x 500 candidates of the P2-P6 configs
train.output_dir = "output/lazyconfig/synthetic/faster_rcnn_R18_C5"
