"""PyramidNeck: the Detectron2 ``Backbone`` shared by every neck (bottom-up network + graphs)."""

import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ..layers.graph import FusionGraph

__all__ = [
    "EXTRA_LEVEL_TYPES",
    "TOP_BLOCKS",
    "PyramidNeck",
    "build_bottom_up",
    "check_choice",
    "check_table_is_read",
    "check_type",
    "extra_levels",
    "fpn_top_block",
    "pooled_extra_levels",
    "variant_norm",
]

logger = logging.getLogger(__name__)

# FPN's ``top_block`` argument -> number of extra levels above the last input.
TOP_BLOCKS = {"maxpool": 1, "p6p7": 2, "": 0}
# MODEL.FPN.EXTRA_LEVEL_TYPE: how the levels above the last input are made.
EXTRA_LEVEL_TYPES = ("maxpool", "conv")
# FPN's ``top_block`` for (MODEL.FPN.NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE); 0 levels: "".
_FPN_TOP_BLOCKS = {(1, "maxpool"): "maxpool", (2, "conv"): "p6p7"}
# (NUM_EXTRA_LEVELS, EXTRA_LEVEL_TYPE) of the replaced MODEL.FPN.TOP_BLOCK, by whether the neck
# pools its extra levels (BiFPN, NAS-FPN read "p6p7" as two pooled levels).
_OLD_TOP_BLOCKS = {
    False: {"maxpool": (1, "maxpool"), "p6p7": (2, "conv"), "": (0, "maxpool")},
    True: {"maxpool": (1, "maxpool"), "p6p7": (2, "maxpool"), "": (0, "maxpool")},
}
# Defaults of MODEL.FPN.NUM_EXTRA_LEVELS / EXTRA_LEVEL_TYPE (fpn_variants.config).
_DEFAULT_EXTRA_LEVELS = (1, "maxpool")
# Default of the necks' own norm keys (MODEL.BIFPN.NORM, MODEL.NASFPN.NORM): their papers'.
_DEFAULT_VARIANT_NORM = "BN"


class PyramidNeck(Backbone):
    """A bottom-up network followed by an optional stem graph and a sequence of cell graphs.

    Geometry comes from ``bottom_up.output_shape()``: input ``in_features[i]`` has stride
    ``2**level``; outputs are named ``p<level>`` with stride ``2**level``. Subclasses build the
    graphs from their node tables and call :meth:`_set_graphs`.

    Forward: images (N, 3, H, W) -> {"p<l>": (N, C, ceil(H / 2**l), ceil(W / 2**l))} for every
    output level l, for any H and W.
    """

    # Checkpoint key prefixes of other implementations that load into this one, {theirs: ours}.
    _checkpoint_aliases: Dict[str, str]
    _version = 1

    def __init__(self, bottom_up: Backbone, in_features: Sequence[str], out_channels: int):
        """
        Args:
            bottom_up (Backbone): the bottom-up network (e.g. a ResNet).
            in_features (list[str]): names of its features the neck takes, from high to low
                resolution, with strides that double from one to the next (e.g. res2..res5).
            out_channels (int): channels of every output level.
        """
        super().__init__()
        if not isinstance(bottom_up, Backbone):
            raise TypeError(
                f"the bottom-up network must be a detectron2 Backbone, got {type(bottom_up)}"
            )
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if not in_features or missing:
            raise ValueError(
                f"MODEL.FPN.IN_FEATURES={list(in_features)} must be a non-empty list of features "
                f"the bottom-up network produces: {list(shapes)}"
            )
        strides = [shapes[f].stride for f in in_features]
        levels = [int(round(math.log2(s))) for s in strides]
        if any(2**lvl != s for lvl, s in zip(levels, strides)) or levels != list(
            range(levels[0], levels[0] + len(levels))
        ):
            raise ValueError(
                f"MODEL.FPN.IN_FEATURES={list(in_features)} have strides {strides}; they must be "
                "powers of two that double from one feature to the next, high resolution first"
            )
        if out_channels <= 0:
            raise ValueError(f"MODEL.FPN.OUT_CHANNELS={out_channels} must be a positive integer")
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        self.input_levels = levels
        self.input_channels = [shapes[f].channels for f in in_features]
        self.out_channels = out_channels
        self._checkpoint_aliases = {}

    def _set_graphs(
        self,
        cells: List[FusionGraph],
        stem: Optional[FusionGraph] = None,
        size_divisibility: int = 0,
    ) -> None:
        """Install the graphs and derive the output names, strides and channels from them."""
        self.stem = stem if stem is not None else _Passthrough()
        self.cells = nn.ModuleList(cells)
        last = cells[-1]
        self._out_features = [f"p{lvl}" for lvl in last.output_levels]
        self._out_feature_strides = {f"p{lvl}": 2**lvl for lvl in last.output_levels}
        self._out_feature_channels = {
            f"p{lvl}": ch for lvl, ch in zip(last.output_levels, last.output_channels)
        }
        self.min_level = self.input_levels[0]
        self.num_extra_levels = max(last.output_levels[-1] - self.input_levels[-1], 0)
        self._size_divisibility = size_divisibility

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_neck(self.bottom_up(x))

    def forward_neck(self, bottom_up_features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """The neck alone: bottom-up features (at least ``in_features``) -> pyramid outputs."""
        feats = [bottom_up_features[f] for f in self.in_features]
        sizes = [[f.shape[-2], f.shape[-1]] for f in feats]
        for _ in range(self.num_extra_levels):
            # Stride-2 ops above the inputs (pooling with SAME padding, 3x3 convs with padding 1)
            # all round up.
            sizes.append([(sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2])
        feats = self.stem(feats, sizes)
        for cell in self.cells:
            feats = cell(feats, sizes)
        return {name: f for name, f in zip(self._out_features, feats)}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name],
                stride=self._out_feature_strides[name],
            )
            for name in self._out_features
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args, **kwargs):
        # Rename keys of other implementations (e.g. Detectron2's FPN) to ours before loading.
        for theirs, ours in self._checkpoint_aliases.items():
            head = prefix + theirs + "."
            for key in [k for k in state_dict if k.startswith(head)]:
                state_dict[prefix + ours + "." + key[len(head) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args, **kwargs)


class _Passthrough(nn.Module):
    """Stem of necks without one: returns the bottom-up features unchanged."""

    def forward(self, feats: List[torch.Tensor], sizes: List[List[int]]) -> List[torch.Tensor]:
        return feats


def check_choice(key: str, value, choices: Sequence) -> None:
    """Raise ValueError naming the config key, the bad value and the valid choices."""
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not one of {list(choices)}")


# How a type is named in a message.
_TYPE_NAMES = {bool: "True or False", int: "an integer", str: "a string", list: "a list"}


def check_type(key: str, value, expected: type) -> None:
    """Raise TypeError naming the config key, the bad value and the expected type (a bool is not
    an integer here; a tuple is a list)."""
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is list:
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, expected)
    if not ok:
        name = _TYPE_NAMES.get(expected, expected.__name__)
        raise TypeError(f"{key}={value!r} must be {name}, not {type(value).__name__}")


def check_table_is_read(table_key: str, table, switch_key: str, switch: str) -> None:
    """Raise ValueError when a custom table is given while the topology key ``switch_key`` is not
    "custom" (the table would be ignored)."""
    if switch != "custom" and len(table) > 0:
        raise ValueError(
            f"{table_key} is only read with {switch_key}='custom', but {switch_key}={switch!r}: "
            f"remove {table_key} or set {switch_key} to 'custom'"
        )


def extra_levels(cfg, pooled: bool) -> Tuple[int, str]:
    """(MODEL.FPN.NUM_EXTRA_LEVELS, MODEL.FPN.EXTRA_LEVEL_TYPE), or what the replaced
    MODEL.FPN.TOP_BLOCK of an older config means for this neck (``pooled``: BiFPN, NAS-FPN),
    when it is set and the two keys are at their defaults or agree with it."""
    fpn = cfg.MODEL.FPN
    num, kind = fpn.NUM_EXTRA_LEVELS, fpn.EXTRA_LEVEL_TYPE
    check_type("MODEL.FPN.NUM_EXTRA_LEVELS", num, int)
    if num < 0:
        raise ValueError(f"MODEL.FPN.NUM_EXTRA_LEVELS={num} must be 0 or more")
    check_choice("MODEL.FPN.EXTRA_LEVEL_TYPE", kind, EXTRA_LEVEL_TYPES)
    old = fpn.get("TOP_BLOCK")
    if old is None:
        return num, kind
    check_choice("MODEL.FPN.TOP_BLOCK", old, list(TOP_BLOCKS))
    meant = _OLD_TOP_BLOCKS[pooled][old]
    same = num == meant[0] and (num == 0 or kind == meant[1])
    replace = (
        f"MODEL.FPN.TOP_BLOCK={old!r} is replaced by MODEL.FPN.NUM_EXTRA_LEVELS={meant[0]}"
        + (f" and MODEL.FPN.EXTRA_LEVEL_TYPE={meant[1]!r}" if meant[0] else "")
        + " for this neck"
    )
    if not same and (num, kind) != _DEFAULT_EXTRA_LEVELS:
        raise ValueError(
            f"{replace}, but they are set to {num} and {kind!r}: remove MODEL.FPN.TOP_BLOCK"
        )
    logger.warning(f"{replace}: set these keys and remove MODEL.FPN.TOP_BLOCK from the config")
    return meant


def fpn_top_block(cfg) -> str:
    """FPN's (and PANet's) ``top_block`` argument from MODEL.FPN.NUM_EXTRA_LEVELS and
    EXTRA_LEVEL_TYPE: 1 "maxpool" level (P6, R-CNNs), 2 "conv" levels (P6, P7, RetinaNet) or 0."""
    num, kind = extra_levels(cfg, pooled=False)
    if num == 0:
        return ""
    if (num, kind) not in _FPN_TOP_BLOCKS:
        raise ValueError(
            f"MODEL.FPN.NUM_EXTRA_LEVELS={num} with MODEL.FPN.EXTRA_LEVEL_TYPE={kind!r} is not "
            f"an FPN top block: use 1 with 'maxpool' (P6), 2 with 'conv' (P6, P7) or 0"
        )
    return _FPN_TOP_BLOCKS[num, kind]


def pooled_extra_levels(cfg, neck: str) -> int:
    """Number of extra levels of a neck that makes them by pooling (BiFPN, NAS-FPN), from
    MODEL.FPN.NUM_EXTRA_LEVELS; EXTRA_LEVEL_TYPE must be "maxpool" and ``MODEL.FPN.TOP_BLOCK_IN``
    stay at its default or name the last input, where these necks take them from."""
    num, kind = extra_levels(cfg, pooled=True)
    if num and kind != "maxpool":
        raise ValueError(
            f"MODEL.FPN.EXTRA_LEVEL_TYPE={kind!r} is not supported by {neck}: it makes its extra "
            "levels by max-pooling, as its reference does; set it to 'maxpool'"
        )
    if cfg.MODEL.FPN.TOP_BLOCK_IN not in ("res5", cfg.MODEL.FPN.IN_FEATURES[-1]):
        raise ValueError(
            f"MODEL.FPN.TOP_BLOCK_IN={cfg.MODEL.FPN.TOP_BLOCK_IN!r} is not supported by {neck}: "
            "it makes its extra levels from the last input feature, as its reference does"
        )
    return num


def variant_norm(cfg, node: str) -> str:
    """The norm of a neck with its own MODEL.<node>.NORM (BiFPN, NAS-FPN: default "BN", their
    papers'). Older configs set MODEL.FPN.NORM for them: it is used when MODEL.<node>.NORM is at
    its default; set to another value, the two must agree (or MODEL.FPN.NORM be "")."""
    own, shared = cfg.MODEL[node].NORM, cfg.MODEL.FPN.NORM
    if shared in ("", own):
        return own
    if own != _DEFAULT_VARIANT_NORM:
        raise ValueError(
            f"MODEL.{node}.NORM={own!r} is this neck's norm, but MODEL.FPN.NORM={shared!r}: "
            f"remove MODEL.FPN.NORM (or set it to '')"
        )
    logger.warning(
        f"MODEL.FPN.NORM={shared!r} used as MODEL.{node}.NORM, which replaces it for this neck: "
        f"set MODEL.{node}.NORM: {shared!r} and remove MODEL.FPN.NORM from the config"
    )
    return shared


def build_bottom_up(cfg, input_shape: ShapeSpec) -> Backbone:
    """Build the bottom-up network named by ``MODEL.BACKBONE.BOTTOM_UP`` from BACKBONE_REGISTRY."""
    name = cfg.MODEL.BACKBONE.BOTTOM_UP
    if name not in BACKBONE_REGISTRY:
        raise KeyError(
            f"MODEL.BACKBONE.BOTTOM_UP={name!r} is not registered in BACKBONE_REGISTRY; "
            f"registered: {sorted(k for k, _ in BACKBONE_REGISTRY)}"
        )
    builder = BACKBONE_REGISTRY.get(name)
    # The registered neck builders (fpn_variants.backbone) carry the class they build.
    neck_cls = getattr(builder, "neck_class", None)
    if isinstance(neck_cls, type) and issubclass(neck_cls, PyramidNeck):
        raise ValueError(
            f"MODEL.BACKBONE.BOTTOM_UP={name!r} is a neck; name a bottom-up network such as "
            "'build_resnet_backbone'"
        )
    bottom_up = builder(cfg, input_shape)
    if not isinstance(bottom_up, Backbone):
        raise TypeError(
            f"MODEL.BACKBONE.BOTTOM_UP={name!r} returned {type(bottom_up).__name__}, "
            "not a detectron2 Backbone"
        )
    return bottom_up
