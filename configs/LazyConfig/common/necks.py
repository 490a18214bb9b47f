"""Another neck in place of a detector config's FPN node, as the YAML builders make it from the
FPN config's keys: the same bottom-up network, width and levels.

A variant config is its FPN config with another neck: ``model.backbone =
swap_neck(model.backbone, BiFPN)``, then the settings it changes (``model.backbone.norm = "GN"``).
"""

from detectron2.config import LazyCall as L

__all__ = ["swap_neck"]


def swap_neck(fpn, neck_cls, **changes):
    """A LazyCall of ``neck_cls`` (any neck of ``fpn_variants``) over the bottom-up network of the
    LazyCall ``fpn``, with its width and extra levels (``num_extra_levels``,
    ``extra_level_type``); ``changes``: other arguments, or these replaced. Its other arguments
    are the class's defaults, as a YAML config leaves the neck's own keys at theirs."""
    kept = dict(
        bottom_up=fpn.bottom_up,
        in_features="${.bottom_up.out_features}",
        out_channels=fpn.out_channels,
        num_extra_levels=fpn.num_extra_levels,
        extra_level_type=fpn.extra_level_type,
    )
    return L(neck_cls)(**{**kept, **changes})
