"""Mask R-CNN, ResNet-18 + FPN, from scratch on the built-in synthetic data (CPU): the LazyConfig
twin of configs/Synthetic/mask_rcnn_R18_FPN.yaml (the Faster R-CNN recipe plus the mask
branch). The files of the other necks import this one and replace ``model.backbone``."""

from ..common.models.mask_rcnn import add_mask_branch
from .faster_rcnn_R18_FPN import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

add_mask_branch(model.roi_heads)
model.roi_heads.batch_size_per_image = 64
model.roi_heads.mask_pooler.sampling_ratio = 2
# 4 convs (and the deconv) at 14x14 per positive box: 256 channels would double the step time.
model.roi_heads.mask_head.conv_dims = [64] * 5

dataloader.train.mapper.use_instance_mask = True
dataloader.evaluator.tasks = ["bbox", "segm"]
train.output_dir = "output/lazyconfig/synthetic/mask_rcnn_R18_FPN"
