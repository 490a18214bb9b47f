"""R-CNN ROI heads whose RoI-to-level rule is a config key.

Detectron2's ``ROIPooler`` pools a box of size s = sqrt(w h) from level
k = floor(k0 + log2(s / s0)), clamped to the levels it is given (FPN paper, eq. 1), with
s0 = 224 and k0 = 4 fixed inside ``StandardROIHeads``. At 800 px that spreads COCO's boxes over
P2-P5; on small images it puts every box on P2/P3. :class:`PyramidROIHeads` reads s0 and k0 from
``MODEL.ROI_HEADS.CANONICAL_BOX_SIZE`` and ``MODEL.ROI_HEADS.CANONICAL_LEVEL`` for its box, mask
and keypoint poolers; with the defaults (224, 4) it is ``StandardROIHeads``.

Its poolers' RoIAlign ops are :class:`fpn_variants.roi_align.ROIAlign`: the same function, with a
training path on the CPU that is several times faster than torchvision's (whose backward is
serial scatter code).
"""

from typing import Dict, Iterable, Optional

from detectron2.config import CfgNode
from detectron2.layers import ROIAlign as Detectron2ROIAlign
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.poolers import ROIPooler

from .roi_align import ROIAlign

__all__ = ["POOLER_NAMES", "PyramidROIHeads", "set_roi_level_rule", "use_fast_roi_align"]

# The ROIPooler attributes of Detectron2's R-CNN ROI heads (each may be absent or None).
POOLER_NAMES = ("box_pooler", "mask_pooler", "keypoint_pooler")


def set_roi_level_rule(cfg: CfgNode, poolers: Iterable[Optional[ROIPooler]]) -> None:
    """Give each of ``poolers`` (None skipped) the RoI-to-level rule of ``cfg``:
    MODEL.ROI_HEADS.CANONICAL_BOX_SIZE and CANONICAL_LEVEL, in place."""
    for pooler in poolers:
        if pooler is not None:
            pooler.canonical_box_size = cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE
            pooler.canonical_level = cfg.MODEL.ROI_HEADS.CANONICAL_LEVEL


def use_fast_roi_align(pooler: ROIPooler) -> None:
    """Replace the ``ROIAlign`` level poolers of ``pooler`` (Detectron2's, torchvision's kernel)
    by :class:`fpn_variants.roi_align.ROIAlign` with the same arguments, in place."""
    for i, op in enumerate(pooler.level_poolers):
        if type(op) is Detectron2ROIAlign:
            pooler.level_poolers[i] = ROIAlign(
                op.output_size, op.spatial_scale, op.sampling_ratio, op.aligned
            )


@ROI_HEADS_REGISTRY.register()
class PyramidROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with the poolers' level rule from the config (same parameters, same
    checkpoints). In LazyConfig, set ``canonical_box_size`` / ``canonical_level`` on the
    ``ROIPooler`` nodes instead."""

    def __init__(self, *args, **kwargs):
        """As ``StandardROIHeads`` (``(cfg, input_shape)`` or keyword arguments)."""
        super().__init__(*args, **kwargs)
        for key in POOLER_NAMES:
            pooler = getattr(self, key, None)
            if pooler is not None:
                use_fast_roi_align(pooler)

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> Dict:
        ret = super().from_config(cfg, input_shape)
        set_roi_level_rule(cfg, map(ret.get, POOLER_NAMES))
        return ret
