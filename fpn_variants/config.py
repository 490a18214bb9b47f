"""Configuration keys added by fpn_variants to Detectron2's yacs config.

Call :func:`add_fpn_variants_config` on a fresh ``get_cfg()`` before ``merge_from_file`` so that
YAML files using the new keys merge (an unknown key is an error at merge time).
"""

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, ROI_HEADS_REGISTRY

from .layers.conv import ACTIVATIONS, NORMS
from .necks.base import (
    check_choice,
    check_table_is_read,
    check_type,
    fpn_top_block,
    pooled_extra_levels,
    variant_norm,
)
from .necks.fpn import FPN
from .necks.specs import parse_bifpn_rows, parse_nasfpn_rows
from .precision import resolve_precision
from .registry import ALL_BUILDERS, VARIANT_NODES
from .roi_heads import PyramidROIHeads

__all__ = [
    "VARIANT_NODES",
    "add_fpn_variants_config",
    "add_training_keys",
    "check_config",
    "check_group_norm_width",
    "check_roi_level_rule",
    "check_training_keys",
    "check_variant_keys",
]


def add_fpn_variants_config(cfg: CN) -> CN:
    """Add every fpn_variants key, with its paper default, to ``cfg`` (in place) and return it."""
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

    _add_pyramid_keys(cfg)
    _add_panet_keys(cfg)
    _add_bifpn_keys(cfg)
    _add_nasfpn_keys(cfg)
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


def _add_pyramid_keys(cfg: CN) -> None:
    # Shared neck keys live on Detectron2's MODEL.FPN node (IN_FEATURES, OUT_CHANNELS, NORM and
    # FUSE_TYPE are Detectron2's own), so existing FPN configs keep working.
    # Number of extra levels above the last input (P6, P7, ...): 1 for the R-CNNs (P6, read by
    # the RPN only), 2 for RetinaNet (P6, P7), 0 for none.
    cfg.MODEL.FPN.NUM_EXTRA_LEVELS = 1
    # How they are made: "maxpool" (each one max-pools the level below: FPN and PANet as
    # Detectron2's LastLevelMaxPool, 1 level; BiFPN and NAS-FPN as their references, after a 1x1
    # projection of the last input where its channels differ) or "conv" (stride-2 3x3 convs,
    # ReLU before the second: RetinaNet's P6/P7; FPN and PANet, 2 levels).
    cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = "maxpool"
    # Input of the "conv" extra levels: "res5" (last bottom-up feature, RetinaNet paper) or "p5"
    # (last pyramid output, as in FCOS).
    cfg.MODEL.FPN.TOP_BLOCK_IN = "res5"
    # Replaced by NUM_EXTRA_LEVELS and EXTRA_LEVEL_TYPE; None (unset) in new configs. Older
    # configs still build the same model: "maxpool" is 1 "maxpool" level, "p6p7" 2 "conv" levels
    # (2 "maxpool" levels for BiFPN and NAS-FPN), "" none (a warning says what to write instead;
    # an error if the new keys are also set to something else).
    cfg.MODEL.FPN.TOP_BLOCK = None
    # Top-down upsampling: "nearest" (paper), "bilinear" or "deconv" (learned 2x transposed conv).
    cfg.MODEL.FPN.UPSAMPLE = "nearest"
    # MODEL.FPN.NORM is the norm of FPN, PANet and the FPN-paper baselines (Detectron2's default
    # "", none); BiFPN and NAS-FPN have their own MODEL.BIFPN.NORM and MODEL.NASFPN.NORM.


def _add_panet_keys(cfg: CN) -> None:
    # PANet (build_panet_backbone): bottom-up path augmentation after the FPN.
    cfg.MODEL.PANET = CN()
    # Activation after each conv of the bottom-up path: "relu" (paper), "swish" or "" (none, as
    # mmdetection's PAFPN).
    cfg.MODEL.PANET.ACTIVATION = "relu"
    # "official": N_(l+1) = conv(down(N_l) + P_(l+1)), N_l finished first (paper, official code);
    # "mmdet": mmdetection's PAFPN, which downsamples the running sum before its 3x3 conv.
    cfg.MODEL.PANET.ORDERING = "official"


def _add_bifpn_keys(cfg: CN) -> None:
    # BiFPN (build_bifpn_backbone): repeated weighted bidirectional layers (EfficientDet).
    cfg.MODEL.BIFPN = CN()
    # Number of BiFPN layers, each with its own weights (EfficientDet-D0: 3).
    cfg.MODEL.BIFPN.NUM_REPEATS = 3
    # Node graph of a layer: "bifpn" (automl's), "pan" (PANet layout with weighted fusion) or
    # "custom" (MODEL.BIFPN.NODES).
    cfg.MODEL.BIFPN.TOPOLOGY = "bifpn"
    # With TOPOLOGY "custom": [[level, [input ids]], ...]. Ids 0..n-1 are the layer inputs, lowest
    # level first; node k gets id n + k; the latest feature of each level is its output.
    cfg.MODEL.BIFPN.NODES = []
    # Fusion of a node's inputs: "fast_normalized" (paper), "softmax" or "sum".
    cfg.MODEL.BIFPN.FUSION = "fast_normalized"
    # Depthwise-separable 3x3 conv after each fusion (paper); False for a regular 3x3 conv.
    cfg.MODEL.BIFPN.SEPARABLE_CONV = True
    # Activation of the post-fusion block: "swish" (paper), "relu" or "".
    cfg.MODEL.BIFPN.ACTIVATION = "swish"
    # Activation before the conv (act -> conv -> norm, the TF reference); False: conv -> norm ->
    # act.
    cfg.MODEL.BIFPN.PRE_ACTIVATION = True
    # Keep a bias in convs followed by a norm, as the TF checkpoints do; False: bias only without
    # norm.
    cfg.MODEL.BIFPN.REDUNDANT_BIAS = True
    # Norm of the projections and post-fusion convs: "BN" (paper), "SyncBN", "GN" or "" (none).
    # (An older config's MODEL.FPN.NORM is used when this key stays at "BN".)
    cfg.MODEL.BIFPN.NORM = "BN"


def _add_nasfpn_keys(cfg: CN) -> None:
    # NAS-FPN (build_nasfpn_backbone): stacked searched cells (Ghiasi et al. 2019).
    cfg.MODEL.NASFPN = CN()
    # Number of stacked cells, each with its own weights (paper: 7 at 256 channels).
    cfg.MODEL.NASFPN.NUM_REPEATS = 7
    # Cell topology: "nasfpn" (published), "nasfpn_sum" (every merge a sum, as the TPU code's
    # use_sum_for_combination) or "custom" (MODEL.NASFPN.BLOCKS). Named cells are defined on
    # P3-P7 and shift with the neck's levels.
    cfg.MODEL.NASFPN.CELL = "nasfpn"
    # With CELL "custom": [[level, "sum" | "global_attention", [id a, id b], is_output], ...].
    # Ids 0..4 are the cell inputs, lowest level first; block k gets id 5 + k.
    cfg.MODEL.NASFPN.BLOCKS = []
    # "tf": the authors' code (attention gate from the coarser input, max-pooled; extra levels by
    # max-pooling). "mmdet": mmdetection's NASFPN (gate from the finer input, average-pooled;
    # 1x1 conv + BN before each extra-level pool; no lateral bias; PyTorch BN defaults).
    cfg.MODEL.NASFPN.REFERENCE = "tf"
    # Depthwise-separable 3x3 convs in the merge cells (paper: regular).
    cfg.MODEL.NASFPN.SEPARABLE_CONV = False
    # Activation before each merge cell's conv: "relu" (paper), "swish" or "".
    cfg.MODEL.NASFPN.ACTIVATION = "relu"
    # Norm of the lateral projections and merge convs: "BN" (paper), "SyncBN", "GN" or "" (none).
    # (An older config's MODEL.FPN.NORM is used when this key stays at "BN".)
    cfg.MODEL.NASFPN.NORM = "BN"


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


def check_config(cfg: CN) -> None:
    """Check what can be checked before building: that the names selecting registered parts
    exist, and the neck's keys that only fail deep inside the build otherwise. Each error names
    the key, the bad value and the valid choices. ``fpn_variants.engine.setup`` runs it; call it
    before ``build_model`` when building a config yourself. The necks' builders check the rest
    (choices of each variant, levels, detector features).

    Raises:
        KeyError: MODEL.META_ARCHITECTURE or MODEL.BACKBONE.NAME is not registered.
        ValueError: a variant-only key set for another variant, an unknown norm or activation,
            GN with OUT_CHANNELS not a multiple of 32 or under 64, MODEL.FPN.NUM_EXTRA_LEVELS /
            EXTRA_LEVEL_TYPE the neck cannot make (or a MODEL.FPN.TOP_BLOCK that contradicts
            them), MODEL.BIFPN.NORM / MODEL.NASFPN.NORM contradicting MODEL.FPN.NORM, a
            malformed row of a custom topology (MODEL.BIFPN.NODES, MODEL.NASFPN.BLOCKS), or one
            set while the topology is not "custom", an unknown SOLVER.AMP.PRECISION or
            float16 on the CPU (:func:`check_training_keys`).
        TypeError: MODEL.FPN.OUT_CHANNELS is not an integer, or a key of the selected variant
            is not of its default's type (e.g. a bool key set to a string from Python).
    """
    # Variant node -> its custom table, the key that selects it, the check of its rows.
    custom_tables = {
        "BIFPN": ("NODES", "TOPOLOGY", parse_bifpn_rows),
        "NASFPN": ("BLOCKS", "CELL", parse_nasfpn_rows),
    }

    check_training_keys(cfg)
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
    if cfg.MODEL.BACKBONE.NAME not in ALL_BUILDERS:
        return
    check_variant_keys(cfg)
    check_type("MODEL.FPN.OUT_CHANNELS", cfg.MODEL.FPN.OUT_CHANNELS, int)
    node = next((n for n, b in VARIANT_NODES.items() if b == cfg.MODEL.BACKBONE.NAME), None)
    if node is not None:
        values, defaults = cfg.MODEL[node], _defaults().MODEL[node]
        # YAML files and merge_from_list check types; values set from Python are not checked.
        for key, default in defaults.items():
            check_type(f"MODEL.{node}.{key}", values[key], type(default))
    if node in custom_tables:
        table, switch, parse = custom_tables[node]
        key, switch_key = f"MODEL.{node}.{table}", f"MODEL.{node}.{switch}"
        check_table_is_read(key, values[table], switch_key, values[switch])
        if values[switch] == "custom":
            parse(values[table])
        # Their layers report an unknown activation without the key.
        check_choice(f"MODEL.{node}.ACTIVATION", values.ACTIVATION, ACTIVATIONS)
    if issubclass(ALL_BUILDERS[cfg.MODEL.BACKBONE.NAME], FPN):
        fpn_top_block(cfg)
    else:
        pooled_extra_levels(cfg, cfg.MODEL.BACKBONE.NAME)
    norm_key, norm = "MODEL.FPN.NORM", cfg.MODEL.FPN.NORM
    if node is not None and "NORM" in cfg.MODEL[node]:
        norm_key, norm = f"MODEL.{node}.NORM", variant_norm(cfg, node)
    check_choice(norm_key, norm, NORMS)
    check_roi_level_rule(cfg)
    check_group_norm_width(norm_key, norm, cfg.MODEL.FPN.OUT_CHANNELS)
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


def check_group_norm_width(norm_key: str, norm: str, channels: int) -> None:
    """Raise ValueError when group norm (Detectron2's "GN": 32 groups) gets a width it cannot
    normalise: ``nn.GroupNorm(32, C)`` needs C a multiple of 32, and with C = 32 each group is one
    channel normalised over its own map alone, which on a 1 x 1 map (a level whose stride is at
    least the image size, e.g. P7 of a 128 px image) leaves one value: the output is the bias
    only, and PyTorch refuses it in training on one image ("Expected more than 1 value per
    channel")."""
    if norm == "GN" and (channels % 32 != 0 or channels < 64):
        raise ValueError(
            f"{norm_key}='GN' uses 32 groups, so MODEL.FPN.OUT_CHANNELS={channels} must be a "
            "multiple of 32 and at least 64 (two channels per group: with one, a 1 x 1 level "
            "has a single value per group and normalises to its bias): set MODEL.FPN."
            "OUT_CHANNELS to 64, 96, ... or choose another norm"
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
