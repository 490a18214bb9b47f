"""RetinaNet R50 with NAS-FPN instead of FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/retinanet_R50_NASFPN_1x.yaml (the FPN file with another ``model.backbone``)."""

from ..common.necks import nasfpn
from .retinanet_R50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

# batch norm in the neck, synchronized across GPUs, as in the paper
model.backbone = nasfpn(model.backbone, norm="SyncBN")
train.output_dir = "output/lazyconfig/coco/retinanet_R50_NASFPN_1x"
