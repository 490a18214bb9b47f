"""Numerical equivalence with the peer implementations after converting their weights."""

import copy

import pytest
import torch

from fpn_variants import NASFPN, BiFPN, PANet
from fpn_variants.convert import (
    convert_effdet_bifpn,
    convert_mmdet_nasfpn,
    convert_mmdet_pafpn,
    load_neck_state_dict,
)

from .peers import import_peer
from .utils import EFFDET_D0, StridedBackbone, neck_parameters

R50_CHANNELS = {2: 256, 3: 512, 4: 1024, 5: 2048}


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights and BN statistics, so that equivalence is not an accident of the init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=gen) * 0.5 + 0.1
                if name.endswith("running_var") or name.endswith("edge_weights"):
                    tensor.copy_(values * 2)
                else:
                    tensor.copy_((values - 0.35) * (1.0 / max(tensor[0].numel(), 1)) ** 0.5)
    return module.eval()


def features(channels, size, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {
        f"c{lvl}": torch.randn(1, ch, size // 2**lvl, size // 2**lvl, generator=gen)
        for lvl, ch in channels.items()
    }


def assert_close(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())


@pytest.mark.parametrize("separable", [True, False])
def test_effdet_bifpn_d0(separable):
    effdet = import_peer("effdet")
    from effdet.efficientdet import BiFpn

    size = 256
    cfg = effdet.get_efficientdet_config("tf_efficientdet_d0")
    cfg.image_size = (size, size)
    cfg.separable_conv = separable
    info = [
        dict(num_chs=40, reduction=8),
        dict(num_chs=112, reduction=16),
        dict(num_chs=320, reduction=32),
    ]
    theirs = randomize(BiFpn(cfg, copy.deepcopy(info)))
    channels = {3: 40, 4: 112, 5: 320}
    ours = BiFPN(
        bottom_up=StridedBackbone(channels),
        in_features=["c3", "c4", "c5"],
        **EFFDET_D0,
        separable_conv=separable,
    ).eval()
    assert neck_parameters(ours) == sum(p.numel() for p in theirs.parameters())
    load_neck_state_dict(ours, convert_effdet_bifpn(theirs.state_dict(), ours))
    feats = features(channels, size)
    with torch.no_grad():
        expected = theirs([feats["c3"], feats["c4"], feats["c5"]])
        out = ours.forward_neck(feats)
    assert_close(list(out.values()), expected)


def test_mmdet_pafpn():
    necks = import_peer("mmdet.models.necks")
    theirs = randomize(
        necks.PAFPN(in_channels=list(R50_CHANNELS.values()), out_channels=256, num_outs=5)
    )
    ours = PANet(
        bottom_up=StridedBackbone(R50_CHANNELS),
        in_features=["c2", "c3", "c4", "c5"],
        ordering="mmdet",
        activation="",
    ).eval()
    load_neck_state_dict(ours, convert_mmdet_pafpn(theirs.state_dict(), ours))
    feats = features(R50_CHANNELS, 256)
    with torch.no_grad():
        expected = theirs(tuple(feats.values()))
        out = ours.forward_neck(feats)
    assert_close(list(out.values()), expected)


def test_mmdet_nasfpn():
    necks = import_peer("mmdet.models.necks")
    theirs = necks.NASFPN(
        in_channels=list(R50_CHANNELS.values()),
        out_channels=256,
        num_outs=5,
        stack_times=7,
        start_level=1,
        norm_cfg=dict(type="BN"),
    )
    theirs = randomize(theirs)
    ours = NASFPN(
        bottom_up=StridedBackbone(R50_CHANNELS),
        in_features=["c3", "c4", "c5"],
        num_extra_levels=2,  # P6, P7: num_outs=5 over C3-C5
        reference="mmdet",
    ).eval()
    assert neck_parameters(ours) == 29_990_144
    load_neck_state_dict(ours, convert_mmdet_nasfpn(theirs.state_dict(), ours))
    feats = features(R50_CHANNELS, 256)
    with torch.no_grad():
        expected = theirs(tuple(feats.values()))
        out = ours.forward_neck(feats)
    assert_close(list(out.values()), expected)


def test_converted_weights_must_fit_the_options():
    necks = import_peer("mmdet.models.necks")
    theirs = necks.PAFPN(in_channels=list(R50_CHANNELS.values()), out_channels=256, num_outs=5)
    official = PANet(bottom_up=StridedBackbone(R50_CHANNELS), in_features=["c2", "c3", "c4", "c5"])
    with pytest.raises(KeyError, match="do not fit this PANet"):
        load_neck_state_dict(official, convert_mmdet_pafpn(theirs.state_dict(), official))


def test_effdet_bifpn_training_mode_forward_and_gradients():
    """Train mode (BN on batch statistics) and backward agree with effdet too, not only eval."""
    effdet = import_peer("effdet")
    from effdet.efficientdet import BiFpn

    size = 128
    cfg = effdet.get_efficientdet_config("tf_efficientdet_d0")
    cfg.image_size = (size, size)
    info = [
        dict(num_chs=40, reduction=8),
        dict(num_chs=112, reduction=16),
        dict(num_chs=320, reduction=32),
    ]
    theirs = randomize(BiFpn(cfg, copy.deepcopy(info))).train()
    channels = {3: 40, 4: 112, 5: 320}
    ours = BiFPN(
        bottom_up=StridedBackbone(channels), in_features=["c3", "c4", "c5"], **EFFDET_D0
    ).train()
    load_neck_state_dict(ours, convert_effdet_bifpn(theirs.state_dict(), ours))
    feats = {k: torch.cat([v, v.flip(-1)]) for k, v in features(channels, size).items()}
    expected = theirs([feats["c3"], feats["c4"], feats["c5"]])
    out = list(ours.forward_neck(feats).values())
    assert_close(out, expected)
    sum(x.square().mean() for x in expected).backward()
    sum(x.square().mean() for x in out).backward()
    # Their gradients, renamed to our keys by the weight converter (buffers: zeros).
    params = dict(theirs.named_parameters())
    grads = {
        k: params[k].grad if k in params else torch.zeros_like(v)
        for k, v in theirs.state_dict().items()
    }
    expected_grads = convert_effdet_bifpn(grads, ours)
    for name, param in ours.named_parameters():
        if name.startswith("bottom_up."):
            continue
        expected = expected_grads[name]
        assert (param.grad - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max()), name
