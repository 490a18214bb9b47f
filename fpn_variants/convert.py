"""Import neck weights of peer implementations into ours.

Each ``convert_*`` function maps a peer neck's ``state_dict()`` onto the parameter names of one of
our necks built with the matching options, and returns a state dict for the neck part (keys as in
``neck.state_dict()``, bottom-up network excluded). :func:`load_neck_state_dict` loads it and
fails loudly on anything missing, unexpected or of the wrong shape.

- effdet ``BiFpn`` -> :class:`BiFPN` (defaults = EfficientDet-D0 settings; match
  ``separable_conv``, ``redundant_bias`` and the fusion method);
- mmdetection ``PAFPN`` -> :class:`PANet` with ``ordering="mmdet"``, ``activation=""``, no norm;
- mmdetection ``NASFPN`` -> :class:`NASFPN` with ``reference="mmdet"``, norm "BN".
"""

import re
from typing import Callable, Dict, Mapping, Optional

import torch
from torch import nn

from .necks import NASFPN, BiFPN, PANet, PyramidNeck

__all__ = [
    "convert_effdet_bifpn",
    "convert_mmdet_nasfpn",
    "convert_mmdet_pafpn",
    "load_neck_state_dict",
]

StateDict = Mapping[str, torch.Tensor]

# Norm and conv parameter names: peer suffix -> ours.
_BN = {"bn.": "norm."}


def _rename(state_dict: StateDict, rule: Callable[[str], Optional[str]], source: str) -> Dict:
    """Apply ``rule`` to every key; a key the rule does not know is an error."""
    out = {}
    for key, value in state_dict.items():
        new = rule(key)
        if new is None:
            raise KeyError(f"{source}: no counterpart for the key {key!r} in our neck")
        out[new] = value
    return out


def _suffix(rest: str, table: Mapping[str, str]) -> str:
    for theirs, ours in table.items():
        if rest.startswith(theirs):
            return ours + rest[len(theirs) :]
    return rest


def convert_effdet_bifpn(state_dict: StateDict, neck: BiFPN) -> Dict[str, torch.Tensor]:
    """effdet ``BiFpn`` (``resample.<level>``, ``cell.<c>.fnode.<j>``) -> ``neck`` keys.

    Edge projections are keyed by input offset in effdet and by input slot here; both follow the
    same node table, so offset -> slot comes from ``neck``'s nodes.
    """
    first_extra = len(neck.in_features)

    def rule(key: str) -> Optional[str]:
        m = re.fullmatch(r"resample\.(\d+)\.conv\.(.+)", key)
        if m:
            node = int(m.group(1)) - first_extra
            return f"stem.nodes.{node}.edges.0.conv." + _suffix(m.group(2), {"conv.": "", **_BN})
        m = re.fullmatch(r"cell\.(\d+)\.fnode\.(\d+)\.(.+)", key)
        if not m:
            return None
        cell, node, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        prefix = f"cells.{cell}.nodes.{node}."
        if rest == "combine.edge_weights":
            return prefix + "fusion.edge_weights"
        m = re.fullmatch(r"combine\.resample\.(\d+)\.conv\.(.+)", rest)
        if m:
            slot = neck.cells[cell].nodes[node].input_ids.index(int(m.group(1)))
            return prefix + f"edges.{slot}.conv." + _suffix(m.group(2), {"conv.": "", **_BN})
        if rest.startswith("after_combine.conv."):
            post = {"conv_dw.": "depthwise.", "conv_pw.": "pointwise.", "conv.": "", **_BN}
            return prefix + "post." + _suffix(rest[len("after_combine.conv.") :], post)
        return None

    return _rename(state_dict, rule, "effdet BiFpn")


def convert_mmdet_pafpn(state_dict: StateDict, neck: PANet) -> Dict[str, torch.Tensor]:
    """mmdetection ``PAFPN`` -> ``neck`` (a PANet with ``ordering="mmdet"``).

    Node layout (:func:`fpn_variants.necks.specs.panet_nodes`): lateral of input k is node
    n-1-k, its 3x3 output conv node n+k; the bottom-up step to level k+1 is node 2n+2k (its stride-2
    conv on edge 0), followed by its 3x3 conv, node 2n+2k+1.
    """
    n = len(neck.in_features)
    targets = {
        "lateral_convs": lambda k: f"cells.0.nodes.{n - 1 - k}.edges.0.conv.",
        "fpn_convs": lambda k: f"cells.0.nodes.{n + k}.post.",
        "downsample_convs": lambda k: f"cells.0.nodes.{2 * n + 2 * k}.edges.0.conv.",
        "pafpn_convs": lambda k: f"cells.0.nodes.{2 * n + 2 * k + 1}.post.",
    }

    def rule(key: str) -> Optional[str]:
        m = re.fullmatch(r"(\w+)\.(\d+)\.conv\.(weight|bias)", key)
        if not m or m.group(1) not in targets:
            return None
        return targets[m.group(1)](int(m.group(2))) + m.group(3)

    return _rename(state_dict, rule, "mmdet PAFPN")


# mmdetection NASFPN stage cells -> block index in NASFPN_CELL (cells gp_43_5 and gp_54_7 have no
# weights: their conv is the one of sum_55_5 / sum_77_7, which add the residual P5 / P7).
_MMDET_NASFPN_CELLS = {
    "gp_64_4": 0,
    "sum_44_4": 1,
    "sum_43_3": 2,
    "sum_34_4": 3,
    "sum_55_5": 4,
    "sum_77_7": 5,
    "gp_75_6": 6,
}


def convert_mmdet_nasfpn(state_dict: StateDict, neck: NASFPN) -> Dict[str, torch.Tensor]:
    """mmdetection ``NASFPN`` -> ``neck`` (a NASFPN with ``reference="mmdet"``, norm "BN")."""
    n = len(neck.in_features)

    def rule(key: str) -> Optional[str]:
        m = re.fullmatch(r"lateral_convs\.(\d+)\.(.+)", key)
        if m:
            return f"stem.nodes.{m.group(1)}.edges.0.conv." + _suffix(
                m.group(2), {"conv.": "", **_BN}
            )
        m = re.fullmatch(r"extra_downsamples\.(\d+)\.0\.(.+)", key)
        if m:
            node = n + int(m.group(1))
            return f"stem.nodes.{node}.edges.0.conv." + _suffix(m.group(2), {"conv.": "", **_BN})
        m = re.fullmatch(r"fpn_stages\.(\d+)\.(\w+)\.out_conv\.(.+)", key)
        if m and m.group(2) in _MMDET_NASFPN_CELLS:
            node = _MMDET_NASFPN_CELLS[m.group(2)]
            return f"cells.{m.group(1)}.nodes.{node}.post." + _suffix(
                m.group(3), {"conv.": "", **_BN}
            )
        return None

    return _rename(state_dict, rule, "mmdet NASFPN")


def load_neck_state_dict(neck: PyramidNeck, state_dict: StateDict) -> None:
    """Load a converted state dict into the neck part of ``neck`` (not its bottom-up network).

    Raises:
        KeyError: if a neck tensor is missing or a converted key does not exist in ``neck``
            (the two networks were built with different options).
        ValueError: if shapes differ (e.g. other channel counts).
    """
    own = {k: v for k, v in neck.state_dict().items() if not k.startswith("bottom_up.")}
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"the converted weights do not fit this {type(neck).__name__}: missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}; build it with the peer's options"
        )
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()]
    wrong = [w for w in wrong if w[1] != w[2]]
    if wrong:
        raise ValueError(f"shape mismatch (key, theirs, ours): {wrong[:8]}")
    modules = dict(neck.named_children())
    for name in ("stem", "cells"):
        part = {k[len(name) + 1 :]: v for k, v in state_dict.items() if k.startswith(name + ".")}
        if part or any(True for _ in modules[name].parameters()):
            nn.Module.load_state_dict(modules[name], part, strict=True)
