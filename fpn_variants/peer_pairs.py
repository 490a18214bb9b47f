"""Our necks next to the peer implementations of the same function, on the same bottom-up
features: the pairs that ``benchmarks/bench_necks.py`` times on the CPU and ``tools/gpu_check.py``
on a GPU. Each pair loads the peer's weights into ours (converted where the names differ), so
their outputs agree (:func:`max_rel_diff`), except the pairs of :data:`COST_ONLY`.

The peers (Detectron2, effdet, mmdet, CenterNet2) are imported when their pair is made: a
missing one raises ImportError there.
"""

import copy
from typing import Callable, Dict, NamedTuple, Union

import torch
from detectron2.modeling import Backbone
from torch import nn

from .convert import (
    convert_effdet_bifpn,
    convert_mmdet_nasfpn,
    convert_mmdet_pafpn,
    load_neck_state_dict,
)
from .necks import FPN, NASFPN, BiFPN, PANet, PyramidNeck
from .peers import import_peer

__all__ = ["COST_ONLY", "PAIRS", "R50", "GivenFeatures", "Pair", "make_features", "max_rel_diff"]

R50 = {2: 256, 3: 512, 4: 1024, 5: 2048}


class GivenFeatures(Backbone):
    """A bottom-up stand-in returning fixed features, so that a full forward times the neck."""

    def __init__(self, channels: Dict[int, int]):
        super().__init__()
        self.features: Dict[str, torch.Tensor] = {}
        self._out_features = [f"res{lvl}" for lvl in channels]
        self._out_feature_channels = {f"res{lvl}": ch for lvl, ch in channels.items()}
        self._out_feature_strides = {f"res{lvl}": 2**lvl for lvl in channels}

    def forward(self, x):
        return self.features


def make_features(channels: Dict[int, int], size: int) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        f"res{lvl}": torch.randn(1, ch, -(-size // 2**lvl), -(-size // 2**lvl), generator=gen)
        for lvl, ch in channels.items()
    }


class Pair(NamedTuple):
    """One benchmark pair: the peer neck, ours, the bottom-up features both take, and how the
    peer takes them (``peer_input``: "bottom_up", a Detectron2 backbone that reads them from its
    stand-in bottom-up network; "list" or "tuple" of the levels)."""

    peer: nn.Module
    ours: PyramidNeck
    feats: Dict[str, torch.Tensor]
    peer_input: str

    def peer_call(self) -> object:
        if self.peer_input == "bottom_up":
            return self.peer(torch.zeros(1))
        levels = list(self.feats.values())
        return self.peer(levels if self.peer_input == "list" else tuple(levels))

    def ours_call(self) -> object:
        return self.ours.forward_neck(self.feats)

    def training_steps(self) -> Dict[str, Callable[[], None]]:
        """{"ours", "peer"}: a training step of each neck (forward, the mean of every output,
        backward); the caller puts the necks in train mode."""

        def step(module: nn.Module, call: Callable[[], object]) -> Callable[[], None]:
            def run() -> None:
                module.zero_grad(set_to_none=True)
                out = call()
                out = out.values() if isinstance(out, dict) else out
                sum(o.mean() for o in out).backward()

            return run

        return {"ours": step(self.ours, self.ours_call), "peer": step(self.peer, self.peer_call)}

    def to(self, device: Union[str, torch.device]) -> "Pair":
        """The pair with both necks and the features on ``device`` (the modules in place)."""
        feats = {name: value.to(device) for name, value in self.feats.items()}
        if self.peer_input == "bottom_up":
            self.peer.bottom_up.features = feats
        return Pair(self.peer.to(device), self.ours.to(device), feats, self.peer_input)


def pair_detectron2_fpn(levels: str, size: int):
    from detectron2.modeling.backbone.fpn import FPN as D2FPN
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7

    channels = R50 if levels == "p2p6" else {k: v for k, v in R50.items() if k >= 3}
    feats = make_features(channels, size)
    names = list(feats)
    bottom_up = GivenFeatures(channels)
    bottom_up.features = feats
    top = LastLevelMaxPool() if levels == "p2p6" else LastLevelP6P7(2048, 256)
    theirs = D2FPN(bottom_up=bottom_up, in_features=names, out_channels=256, top_block=top).eval()
    ours = FPN(
        bottom_up=GivenFeatures(channels),
        in_features=names,
        out_channels=256,
        num_extra_levels=1 if levels == "p2p6" else 2,
        extra_level_type="maxpool" if levels == "p2p6" else "conv",
    )
    ours.load_state_dict(theirs.state_dict(), strict=False)
    return Pair(theirs, ours, feats, "bottom_up")


def pair_effdet_bifpn(width: int, size: int):
    import effdet
    from effdet.efficientdet import BiFpn

    channels = {3: 40, 4: 112, 5: 320} if width == 64 else {3: 512, 4: 1024, 5: 2048}
    cfg = effdet.get_efficientdet_config("tf_efficientdet_d0")
    cfg.image_size = (size, size)
    cfg.fpn_channels = width
    info = [dict(num_chs=c, reduction=2**lvl) for lvl, c in channels.items()]
    theirs = BiFpn(cfg, copy.deepcopy(info)).eval()
    feats = make_features(channels, size)
    ours = BiFPN(
        bottom_up=GivenFeatures(channels),
        in_features=list(feats),
        out_channels=width,
        num_extra_levels=2,
    )
    load_neck_state_dict(ours, convert_effdet_bifpn(theirs.state_dict(), ours))
    return Pair(theirs, ours, feats, "list")


def _mmdet_necks():
    return import_peer("mmdet.models.necks")


def pair_mmdet_fpn_p6_from_c5(size: int):
    """RetinaNet's FPN: P3-P7, P6 by a stride-2 conv on C5, ReLU, P7 (mmdet:
    ``add_extra_convs="on_input"``, ``relu_before_extra_convs=True``)."""
    channels = {k: v for k, v in R50.items() if k >= 3}
    theirs = _mmdet_necks().FPN(
        in_channels=list(channels.values()),
        out_channels=256,
        num_outs=5,
        add_extra_convs="on_input",
        relu_before_extra_convs=True,
    )
    feats = make_features(channels, size)
    ours = FPN(
        bottom_up=GivenFeatures(channels),
        in_features=list(feats),
        num_extra_levels=2,
        extra_level_type="conv",
    )
    # mmdet's names -> Detectron2's, which our FPN loads.
    names = {"lateral_convs": "fpn_lateral{}", "fpn_convs": "fpn_output{}"}
    extra = {3: "top_block.p6", 4: "top_block.p7"}
    state = {}
    for key, value in theirs.state_dict().items():
        kind, index, _, param = key.split(".")
        index = int(index)
        name = extra[index] if kind == "fpn_convs" and index in extra else None
        state[f"{name or names[kind].format(index + 3)}.{param}"] = value
    ours.load_state_dict(state, strict=False)
    return Pair(theirs, ours, feats, "tuple")


def pair_mmdet_pafpn(size: int):
    theirs = _mmdet_necks().PAFPN(in_channels=list(R50.values()), out_channels=256, num_outs=5)
    feats = make_features(R50, size)
    ours = PANet(
        bottom_up=GivenFeatures(R50), in_features=list(feats), ordering="mmdet", activation=""
    )
    load_neck_state_dict(ours, convert_mmdet_pafpn(theirs.state_dict(), ours))
    return Pair(theirs, ours, feats, "tuple")


def pair_mmdet_nasfpn(size: int):
    theirs = (
        _mmdet_necks()
        .NASFPN(
            in_channels=list(R50.values()),
            out_channels=256,
            num_outs=5,
            stack_times=7,
            start_level=1,
            norm_cfg=dict(type="BN"),
        )
        .eval()
    )
    feats = make_features(R50, size)
    ours = NASFPN(
        bottom_up=GivenFeatures(R50),
        in_features=["res3", "res4", "res5"],
        num_extra_levels=2,
        reference="mmdet",
    )
    load_neck_state_dict(ours, convert_mmdet_nasfpn(theirs.state_dict(), ours))
    return Pair(theirs, ours, feats, "tuple")


def pair_centernet2_bifpn(size: int):
    from centernet.modeling.backbone.bifpn import BiFPN as CN2BiFPN

    channels = {k: v for k, v in R50.items() if k >= 3}
    feats = make_features(channels, size)
    bottom_up = GivenFeatures(channels)
    bottom_up.features = feats
    # CenterNet2's defaults: 160 channels, 6 layers, GN, regular convs, bias only without norm.
    theirs = CN2BiFPN(
        cfg=None,
        bottom_up=bottom_up,
        in_features=list(feats),
        out_channels=160,
        norm="GN",
        num_levels=5,
        num_bifpn=6,
        separable_conv=False,
    ).eval()
    ours = BiFPN(
        bottom_up=GivenFeatures(channels),
        in_features=list(feats),
        out_channels=160,
        num_extra_levels=2,
        num_repeats=6,
        separable_conv=False,
        norm="GN",
        redundant_bias=False,
    )
    # Not the same function (CenterNet2 pools with kernel 2, effdet/TF with kernel 3 SAME), so the
    # outputs are not compared, only the cost.
    return Pair(theirs, ours, feats, "bottom_up")


PAIRS: Dict[str, Callable] = {
    "detectron2 FPN P2-P6 @800": lambda: pair_detectron2_fpn("p2p6", 800),
    "detectron2 FPN P3-P7 @800": lambda: pair_detectron2_fpn("p3p7", 800),
    "effdet BiFPN D0 @512": lambda: pair_effdet_bifpn(64, 512),
    "effdet BiFPN R50 W256 D3 @640": lambda: pair_effdet_bifpn(256, 640),
    "mmdet FPN P3-P7 P6 from C5 @800": lambda: pair_mmdet_fpn_p6_from_c5(800),
    "mmdet PAFPN P2-P6 @800": lambda: pair_mmdet_pafpn(800),
    "mmdet NASFPN 7@256 @640": lambda: pair_mmdet_nasfpn(640),
    "CenterNet2 BiFPN W160 D6 @640": lambda: pair_centernet2_bifpn(640),
}
# Pairs whose outputs are not the same function (different pooling), compared on cost only.
COST_ONLY = {"CenterNet2 BiFPN W160 D6 @640"}


def max_rel_diff(a, b) -> float:
    """max |a - b| / max |b| over the output levels."""
    a = list(a.values()) if isinstance(a, dict) else list(a)
    b = list(b.values()) if isinstance(b, dict) else list(b)
    return max((x - y).abs().max().item() / y.abs().max().item() for x, y in zip(a, b))
