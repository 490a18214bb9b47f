"""Configuration keys added by fpn_variants to Detectron2's yacs config.

Call :func:`add_fpn_variants_config` on a fresh ``get_cfg()`` before ``merge_from_file`` so that
YAML files using the new keys merge (an unknown key is an error at merge time), or read a YAML
file with :func:`load_config`, which does both.
"""

import os
from typing import Sequence, Union

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, ROI_HEADS_REGISTRY

from .layers.conv import NORMS
from .necks.options import check_choice, check_type
from .precision import resolve_precision
from .registry import ALL_BUILDERS, VARIANT_NODES, config_options
from .roi_heads import PyramidROIHeads

__all__ = [
    "VARIANT_NODES",
    "add_fpn_variants_config",
    "add_training_keys",
    "check_config",
    "check_roi_level_rule",
    "check_training_keys",
    "check_variant_keys",
    "config_from_yaml",
    "load_config",
]


def add_fpn_variants_config(cfg: CN) -> CN:
    """Add every fpn_variants key, with its default, to ``cfg`` (in place) and return it. The
    necks' keys come from their option declarations (the README's option tables)."""
    # Detectron2 defaults to "cuda"; this project is usable on CPU-only machines out of the box.
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

    # Bottom-up network under the neck: any BACKBONE_REGISTRY entry that returns a Backbone.
    cfg.MODEL.BACKBONE.BOTTOM_UP = "build_resnet_backbone"

    # RoI-to-level rule of the R-CNN poolers (ROI_HEADS.NAME "PyramidROIHeads"): a box of size
    # s = sqrt(w h) is pooled from level floor(CANONICAL_LEVEL + log2(s / CANONICAL_BOX_SIZE)),
    # clamped to ROI_HEADS.IN_FEATURES. 224 / 4 are the FPN paper's and Detectron2's (tuned for
    # ~800 px images); smaller images scale CANONICAL_BOX_SIZE with their size.
    cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = 224
    cfg.MODEL.ROI_HEADS.CANONICAL_LEVEL = 4

    _add_neck_keys(cfg)
    add_training_keys(cfg)
    return cfg


def add_training_keys(cfg: CN) -> None:
    """Mixed precision and memory format keys (:mod:`fpn_variants.precision`), in place."""
    # Autocast dtype of SOLVER.AMP.ENABLED: "float16" (CUDA only; with a gradient scaler),
    # "bfloat16" (CPU or CUDA; no scaler) or "" (the device's default: float16 on CUDA, as
    # Detectron2's AMPTrainer, bfloat16 on the CPU).
    cfg.SOLVER.AMP.PRECISION = ""
    # Evaluation (and --eval-only) under the same autocast (SOLVER.AMP.PRECISION on
    # MODEL.DEVICE). Default False: evaluation runs in float32, whatever the training ran in.
    cfg.TEST.AMP = CN({"ENABLED": False})
    # Convolution weights and each batch in channels-last (NHWC) memory format, for training
    # and evaluation. Same values, so checkpoints load with or without it.
    cfg.MODEL.CHANNELS_LAST = False


def _add_neck_keys(cfg: CN) -> None:
    """The necks' keys: the shared ones on Detectron2's MODEL.FPN node (so existing FPN configs
    keep working), the variant-only ones on their own nodes (MODEL.PANET, MODEL.BIFPN, ...)."""
    for node in VARIANT_NODES:
        cfg.MODEL[node] = CN()
    for option in config_options().values():
        if not option.detectron2:
            node, leaf = option.key.split(".")
            cfg.MODEL[node][leaf] = option.config_default
    # Replaced by NUM_EXTRA_LEVELS and EXTRA_LEVEL_TYPE; None (unset) in new configs. Older
    # configs still build the same model: "maxpool" is 1 "maxpool" level, "p6p7" 2 "conv" levels
    # (2 "maxpool" levels for BiFPN and NAS-FPN), "" none (a warning says what to write instead;
    # an error if the new keys are also set to something else).
    cfg.MODEL.FPN.TOP_BLOCK = None


def check_variant_keys(cfg: CN) -> None:
    """Raise ValueError when a variant-only key differs from its default but its neck is not the
    one selected by ``MODEL.BACKBONE.NAME`` (it would be ignored silently otherwise)."""
    defaults = _defaults()
    selected = cfg.MODEL.BACKBONE.NAME
    for node, builder in VARIANT_NODES.items():
        if selected == builder or node not in cfg.MODEL:
            continue
        changed = [
            f"MODEL.{node}.{key}={value!r}"
            for key, value in cfg.MODEL[node].items()
            if value != defaults.MODEL[node][key]
        ]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} only apply to MODEL.BACKBONE.NAME={builder!r}, but "
                f"MODEL.BACKBONE.NAME={selected!r}: remove them or select {builder!r}"
            )


def _defaults() -> CN:
    return add_fpn_variants_config(get_cfg())


def load_config(path: Union[str, os.PathLike], opts: Sequence[str] = (), freeze: bool = True) -> CN:
    """Detectron2's defaults with the fpn_variants keys, the YAML file ``path`` merged into them
    (safely: its YAML python tags do not run), then ``opts`` ("KEY VALUE ..."); frozen unless
    ``freeze`` is False.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file has a key that neither Detectron2 nor fpn_variants knows.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    cfg = _defaults()
    try:
        cfg.merge_from_file(str(path), allow_unsafe=False)  # Detectron2's default runs the tags
    except KeyError as e:
        raise ValueError(f"{path} has keys unknown to this fpn_variants: {e}") from e
    cfg.merge_from_list(list(opts))
    if freeze:
        cfg.freeze()
    return cfg


def config_from_yaml(text: str) -> CN:
    """Detectron2's defaults with the fpn_variants keys and the config dumped as ``text`` (by
    ``cfg.dump()``) merged into them, not frozen."""
    cfg = _defaults()
    cfg.merge_from_other_cfg(CN.load_cfg(text))  # yaml.safe_load: no code runs
    return cfg


def check_config(cfg: CN) -> None:
    """Check what can be checked before building, one concern at a time: that the names
    selecting registered parts exist, the selected neck's options (the same checks its
    constructor runs, naming the keys), the RoI level rule and the bottom-up norm. Each error
    names the key, the bad value and the valid choices. ``fpn_variants.engine.setup`` runs it;
    call it before ``build_model`` when building a config yourself. The necks' builders check
    the rest (levels, detector features).

    Raises:
        KeyError: MODEL.META_ARCHITECTURE or MODEL.BACKBONE.NAME is not registered.
        ValueError, TypeError: a variant-only key set for another variant, an option of the
            selected neck that its declaration or its constructor refuses, an unknown
            SOLVER.AMP.PRECISION or float16 on the CPU (:func:`check_training_keys`).
    """
    check_training_keys(cfg)
    check_registered_names(cfg)
    neck = ALL_BUILDERS.get(cfg.MODEL.BACKBONE.NAME)
    if neck is None:
        return
    check_variant_keys(cfg)
    neck.check_options(neck.options_from_config(cfg), config=True)
    check_roi_level_rule(cfg)
    if cfg.MODEL.BACKBONE.BOTTOM_UP == "build_resnet_backbone":
        check_choice("MODEL.RESNETS.NORM", cfg.MODEL.RESNETS.NORM, NORMS)


def check_training_keys(cfg: CN) -> None:
    """Raise ValueError when SOLVER.AMP.PRECISION is unknown, or float16 on the CPU (with AMP in
    training or evaluation: SOLVER.AMP.ENABLED or TEST.AMP.ENABLED); TypeError when
    MODEL.CHANNELS_LAST or an ENABLED key is not a bool."""
    for key, value in (
        ("SOLVER.AMP.ENABLED", cfg.SOLVER.AMP.ENABLED),
        ("TEST.AMP.ENABLED", cfg.TEST.AMP.ENABLED),
        ("MODEL.CHANNELS_LAST", cfg.MODEL.CHANNELS_LAST),
    ):
        check_type(key, value, bool)
    if cfg.SOLVER.AMP.ENABLED or cfg.TEST.AMP.ENABLED:
        resolve_precision(cfg.SOLVER.AMP.PRECISION, cfg.MODEL.DEVICE)


def check_registered_names(cfg: CN) -> None:
    """Raise KeyError when MODEL.META_ARCHITECTURE or MODEL.BACKBONE.NAME is not registered."""
    for key, name, registry, ours in (
        ("MODEL.META_ARCHITECTURE", cfg.MODEL.META_ARCHITECTURE, META_ARCH_REGISTRY, ""),
        (
            "MODEL.BACKBONE.NAME",
            cfg.MODEL.BACKBONE.NAME,
            BACKBONE_REGISTRY,
            f"the fpn_variants necks are {list(ALL_BUILDERS)}; ",
        ),
    ):
        if name not in registry:
            raise KeyError(
                f"{key}={name!r} is not registered: {ours}every registered name: "
                f"{sorted(k for k, _ in registry)}"
            )


def check_roi_level_rule(cfg: CN) -> None:
    """Raise when MODEL.ROI_HEADS.CANONICAL_BOX_SIZE / CANONICAL_LEVEL are not a positive number
    and an integer, or differ from Detectron2's 224 / 4 while the ROI heads ignore them."""
    heads = cfg.MODEL.ROI_HEADS
    size, level = heads.CANONICAL_BOX_SIZE, heads.CANONICAL_LEVEL
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not size > 0:
        raise ValueError(
            f"MODEL.ROI_HEADS.CANONICAL_BOX_SIZE={size!r} must be a positive number of pixels"
        )
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"MODEL.ROI_HEADS.CANONICAL_LEVEL={level!r} must be an integer")
    if (size, level) == (224, 4) or cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        return
    name = heads.NAME
    heads_cls = ROI_HEADS_REGISTRY.get(name) if name in ROI_HEADS_REGISTRY else None
    if not (isinstance(heads_cls, type) and issubclass(heads_cls, PyramidROIHeads)):
        raise ValueError(
            f"MODEL.ROI_HEADS.CANONICAL_BOX_SIZE={size!r} / CANONICAL_LEVEL={level!r} are only "
            f"read by MODEL.ROI_HEADS.NAME='PyramidROIHeads', but it is {name!r}: select "
            "'PyramidROIHeads' or keep 224 / 4"
        )
