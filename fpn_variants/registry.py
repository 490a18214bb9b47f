"""The neck registry: one row per neck this package builds, read by everything that lists necks.

The variant-only config nodes of :mod:`fpn_variants.config`, the short names and config files of
:mod:`fpn_variants.comparison` and the labels and order of the model zoo come from
:data:`NECK_REGISTRY`; each row names a builder that :mod:`fpn_variants.backbone` defines as a
plain decorated function (``tests/test_registry.py`` keeps the two equal). The README's "Adding a
neck" lists every file a new neck touches: a neck of the papers declares here, in its row, what
its configs change in FPN's (:class:`ConfigChange`), and ``tools/write_configs.py`` writes its YAML
and LazyConfig files from that.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Type

from .necks.ablations import BottomUpPyramid, FinestLevelFPN, SingleScale, TopDownPyramid
from .necks.base import PyramidNeck
from .necks.bifpn import BiFPN
from .necks.fpn import FPN
from .necks.nasfpn import NASFPN
from .necks.options import Option
from .necks.panet import PANet

__all__ = [
    "ALL_BUILDERS",
    "BASELINE_BUILDERS",
    "NECK_BUILDERS",
    "NECK_REGISTRY",
    "RECIPES",
    "VARIANT_NODES",
    "ConfigChange",
    "config_options",
    "NeckEntry",
    "entry",
]


# The recipes of configs/ (its folders); a ConfigChange applies to some of them.
RECIPES = ("Synthetic", "COCO")


@dataclass(frozen=True)
class ConfigChange:
    """One setting that a neck's configs change in their detector's FPN config.

    Attributes:
        arg (str): the neck's constructor argument (one of its ``options``; the YAML key is the
            option's), e.g. "norm".
        value: its value in these configs.
        why (str): the reason, written as a comment next to the setting.
        recipes (tuple of str): the recipes (folders of ``configs/``, :data:`RECIPES`) whose
            configs set it.
    """

    arg: str
    value: Any
    why: str
    recipes: Tuple[str, ...] = RECIPES


@dataclass(frozen=True)
class NeckEntry:
    """One neck of the registry.

    Attributes:
        key (str): short name on the command line (``tools/compare.py --necks``).
        builder (str): its ``BACKBONE_REGISTRY`` name, ``MODEL.BACKBONE.NAME``. Rows may share a
            builder when they differ by config only (C4 and C5 single-scale baselines).
        neck_class (type): the :class:`PyramidNeck` it builds from a config.
        label (str): name in tables, plots and the model zoo.
        config_suffix (str): ``<detector>_R18_<config_suffix>.yaml`` in ``configs/Synthetic``.
        variant_node (str or None): ``MODEL.<node>`` read by this builder only.
        paper (bool): a neck of the papers (True) or a baseline of the FPN paper (its Tables 1-3).
        config_changes (tuple of ConfigChange): what the configs of a neck of the papers change in
            FPN's config besides ``MODEL.BACKBONE.NAME``; ``tools/write_configs.py`` writes them
            (a change is written where it differs from that detector's FPN config). The
            baselines' configs are written by hand: they change the heads too.
    """

    key: str
    builder: str
    neck_class: Type[PyramidNeck]
    label: str
    config_suffix: str
    variant_node: Optional[str]
    paper: bool
    config_changes: Tuple[ConfigChange, ...] = ()


# What the configs of the stacked necks (BiFPN, NAS-FPN) change in FPN's.
_STACKED_NECK_CHANGES = (
    ConfigChange("extra_level_type", "maxpool", "P6, P7 by max-pooling, as the paper"),
    ConfigChange(
        "norm", "GN",
        "Group norm (32 groups) in the neck where the paper has batch norm: the papers' BN sees "
        "64-128 images per step (synced), this recipe 4, and with 4 the stacked necks' eval-mode "
        "outputs do not match training (docs/deep_stacks.md).",
        recipes=("Synthetic",),
    ),
    ConfigChange(
        "norm", "SyncBN", "batch norm in the neck, synchronized across GPUs, as in the paper",
        recipes=("COCO",),
    ),
)  # fmt: skip


# The papers' necks first (FPN is the baseline of every comparison), then the FPN paper's
# baselines (its Tables 1-3; Faster R-CNN configs only).
NECK_REGISTRY: Tuple[NeckEntry, ...] = (
    NeckEntry("fpn", "build_fpn_backbone", FPN, "FPN", "FPN", None, True),
    NeckEntry("panet", "build_panet_backbone", PANet, "PANet", "PANet", "PANET", True),
    NeckEntry(
        "bifpn", "build_bifpn_backbone", BiFPN, "BiFPN", "BiFPN", "BIFPN", True,
        _STACKED_NECK_CHANGES,
    ),
    NeckEntry(
        "nasfpn", "build_nasfpn_backbone", NASFPN, "NAS-FPN", "NASFPN", "NASFPN", True,
        _STACKED_NECK_CHANGES,
    ),
    NeckEntry(
        "c4", "build_single_scale_backbone", SingleScale, "C4 (single scale)", "C4", None, False
    ),
    NeckEntry(
        "c5", "build_single_scale_backbone", SingleScale, "C5 (single scale)", "C5", None, False
    ),
    NeckEntry(
        "bottom_up", "build_bottom_up_pyramid_backbone", BottomUpPyramid, "Bottom-up pyramid",
        "BottomUp", None, False,
    ),
    NeckEntry(
        "top_down", "build_top_down_pyramid_backbone", TopDownPyramid, "Top-down, no laterals",
        "TopDown", None, False,
    ),
    NeckEntry(
        "fpn_p2", "build_finest_level_fpn_backbone", FinestLevelFPN, "FPN, P2 only", "FPNP2",
        None, False,
    ),
)  # fmt: skip


def entry(key: str) -> NeckEntry:
    """The row of short name ``key``; KeyError listing the short names otherwise."""
    for row in NECK_REGISTRY:
        if row.key == key:
            return row
    raise KeyError(f"neck {key!r} is not one of {[row.key for row in NECK_REGISTRY]}")


def _builders(paper: Optional[bool]) -> Dict[str, Type[PyramidNeck]]:
    builders: Dict[str, Type[PyramidNeck]] = {}
    for row in NECK_REGISTRY:
        if paper is not None and row.paper != paper:
            continue
        if builders.setdefault(row.builder, row.neck_class) is not row.neck_class:
            raise ValueError(f"{row.builder} is given two neck classes in NECK_REGISTRY")
    return builders


# Builder name -> neck class: the necks of the papers, the FPN paper's baselines, all of them.
NECK_BUILDERS = _builders(paper=True)
BASELINE_BUILDERS = _builders(paper=False)
ALL_BUILDERS = _builders(paper=None)
# Variant-only config node -> the builder that reads it.
VARIANT_NODES = {row.variant_node: row.builder for row in NECK_REGISTRY if row.variant_node}


def config_options() -> Dict[str, Option]:
    """Config key -> its declaration, over every neck (a shared key, e.g. MODEL.FPN.OUT_CHANNELS,
    is declared by several necks with one type and default; ``tests/test_options.py``)."""
    options: Dict[str, Option] = {}
    for neck_class in ALL_BUILDERS.values():
        for option in neck_class.options:
            options.setdefault(option.config_key, option)
    return options
