"""RetinaNet R50-FPN, 1x schedule on COCO 2017: the LazyConfig twin of
configs/COCO/retinanet_R50_FPN_1x.yaml. The files of the other necks import this one and replace
``model.backbone``."""

from ..common.coco import dataloader, lr_multiplier, optimizer, train  # noqa: F401
from ..common.models.retinanet import model  # noqa: F401

dataloader.train.mapper.use_instance_mask = False
optimizer.lr = 0.01  # RetinaNet's own default, half of the R-CNNs'
train.output_dir = "output/lazyconfig/coco/retinanet_R50_FPN_1x"
