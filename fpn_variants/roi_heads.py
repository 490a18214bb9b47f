"""R-CNN ROI heads whose RoI-to-level rule is a config key.

Detectron2's ``ROIPooler`` pools a box of size s = sqrt(w h) from level
k = floor(k0 + log2(s / s0)), clamped to the levels it is given (FPN paper, eq. 1), with
s0 = 224 and k0 = 4 fixed inside ``StandardROIHeads``. At 800 px that spreads COCO's boxes over
P2-P5; on small images it puts every box on P2/P3. :class:`PyramidROIHeads` reads s0 and k0 from
``MODEL.ROI_HEADS.CANONICAL_BOX_SIZE`` and ``MODEL.ROI_HEADS.CANONICAL_LEVEL`` for its box, mask
and keypoint poolers; with the defaults (224, 4) it is ``StandardROIHeads``.
"""

from typing import Dict

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

__all__ = ["PyramidROIHeads"]


@ROI_HEADS_REGISTRY.register()
class PyramidROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with the poolers' level rule from the config (same parameters, same
    checkpoints). In LazyConfig, set ``canonical_box_size`` / ``canonical_level`` on the
    ``ROIPooler`` nodes instead."""

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict:
        ret = super().from_config(cfg, input_shape)
        for key in ("box_pooler", "mask_pooler", "keypoint_pooler"):
            pooler = ret.get(key)
            if pooler is not None:
                pooler.canonical_box_size = cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE
                pooler.canonical_level = cfg.MODEL.ROI_HEADS.CANONICAL_LEVEL
        return ret
