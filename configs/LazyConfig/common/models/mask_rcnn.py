"""Mask R-CNN on a feature pyramid P2-P6: Faster R-CNN (``faster_rcnn.py``) plus the mask branch
of configs/Base-MaskRCNN.yaml, with Detectron2's default values."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead

from .faster_rcnn import model


def add_mask_branch(roi_heads) -> None:
    """Add the mask branch (pooler + 4 convs and a deconv) to a PyramidROIHeads node, in place.

    It reads the box branch's levels, pooler scales and level rule and the backbone's channels.
    """
    roi_heads.mask_in_features = "${.box_in_features}"
    roi_heads.mask_pooler = L(ROIPooler)(
        output_size=14,
        scales="${..box_pooler.scales}",
        sampling_ratio=0,
        pooler_type="ROIAlignV2",
        canonical_box_size="${..box_pooler.canonical_box_size}",
        canonical_level="${..box_pooler.canonical_level}",
    )
    roi_heads.mask_head = L(MaskRCNNConvUpsampleHead)(
        input_shape=L(ShapeSpec)(
            channels="${....backbone.out_channels}",
            height="${...mask_pooler.output_size}",
            width="${...mask_pooler.output_size}",
        ),
        num_classes="${..num_classes}",
        conv_dims=[256] * 5,  # 4 convs, then the 2x deconv
    )


add_mask_branch(model.roi_heads)
