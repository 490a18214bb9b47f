"""PyramidNeck: the Detectron2 ``Backbone`` shared by every neck (bottom-up network + graphs)."""

import math
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ..layers.graph import FusionGraph
from .options import Names, Option, OptionError

__all__ = ["PyramidNeck", "build_bottom_up"]


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
    # The neck's options besides ``bottom_up`` and ``in_features`` (:mod:`.options`).
    options: ClassVar[Tuple[Option, ...]] = ()

    @classmethod
    def check_options(cls, values: Mapping[str, Any], config: bool = False) -> None:
        """Check option values (argument -> value) against the declarations, then together;
        errors name the config keys (``config``) or the arguments."""
        declared = {option.arg: option for option in cls.options}
        names = cls.config_names if config else (lambda arg: arg)
        for arg, value in values.items():
            if arg in declared:
                declared[arg].check(value, names(arg))
        cls._check_together(values, names)

    @classmethod
    def config_names(cls, arg: str) -> str:
        """The config key of argument ``arg`` (``in_features`` or an option)."""
        if arg == "in_features":
            return "MODEL.FPN.IN_FEATURES"
        return next(option.config_key for option in cls.options if option.arg == arg)

    @classmethod
    def _check_together(cls, values: Mapping[str, Any], name: Names) -> None:
        """Checks of several options at once (e.g. a norm and the width it normalises)."""

    @classmethod
    def options_from_config(cls, cfg) -> Dict[str, Any]:
        """The options of a config, unchecked (argument -> value)."""
        return {option.arg: option.from_config(cfg) for option in cls.options}

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> Dict[str, Any]:
        values = cls.options_from_config(cfg)
        cls.check_options(values, config=True)
        return {
            "bottom_up": build_bottom_up(cfg, input_shape),
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            **values,
        }

    @classmethod
    def _check_arguments(cls, arguments: Mapping[str, Any]) -> None:
        """Check the constructor's arguments (its ``locals()``) that are options."""
        declared = {option.arg for option in cls.options}
        cls.check_options({k: v for k, v in arguments.items() if k in declared})

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
            raise OptionError(
                lambda name: f"{name('in_features')}={list(in_features)} must be a non-empty list "
                f"of features the bottom-up network produces: {list(shapes)}"
            )
        strides = [shapes[f].stride for f in in_features]
        levels = [int(round(math.log2(s))) for s in strides]
        if any(2**lvl != s for lvl, s in zip(levels, strides)) or levels != list(
            range(levels[0], levels[0] + len(levels))
        ):
            raise OptionError(
                lambda name: f"{name('in_features')}={list(in_features)} have strides {strides}; "
                "they must be powers of two that double from one feature to the next, high "
                "resolution first"
            )
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
