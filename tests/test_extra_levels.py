"""MODEL.FPN.NUM_EXTRA_LEVELS / EXTRA_LEVEL_TYPE (which replace the two-meaning TOP_BLOCK), the
BiFPN and NAS-FPN norm keys (paper default "BN" whatever MODEL.FPN.NORM says) and the group-norm
width check."""

import glob
import logging
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

import fpn_variants
from fpn_variants.config import check_config

from .utils import POOLING_NECKS, make_cfg

HERE = os.path.dirname(__file__)
# Full config dumps of model zoo releases written with MODEL.FPN.TOP_BLOCK (before issue 23
# rebuilt the zoo), kept as they were; and the configs of today's releases.
OLD_ZOO_CONFIGS = sorted(glob.glob(os.path.join(HERE, "data", "zoo_configs_before_issue_23", "*")))
ZOO_CONFIGS = sorted(glob.glob(os.path.join(HERE, "..", "model_zoo", "configs", "*.yaml")))
POOLED = POOLING_NECKS
NORM_TYPES = (torch.nn.BatchNorm2d, torch.nn.GroupNorm)


def _new_keys(neck: str, levels: str):
    """make_cfg (the new keys), with one layer or cell for BiFPN and NAS-FPN."""
    cfg = make_cfg(neck, levels=levels)
    assert cfg.MODEL.FPN.TOP_BLOCK is None
    if neck == "build_nasfpn_backbone":
        cfg.MODEL.NASFPN.NUM_REPEATS = 1
    if neck == "build_bifpn_backbone":
        cfg.MODEL.BIFPN.NUM_REPEATS = 1
    return cfg


def _neck_norms(model):
    """Types of the norm layers of the neck (not of its bottom-up network)."""
    return {
        type(m)
        for name, m in model.named_modules()
        if not name.startswith("bottom_up") and isinstance(m, NORM_TYPES)
    }


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("neck", ["build_fpn_backbone", "build_panet_backbone", *POOLED])
@pytest.mark.parametrize("levels", ["p2p6", "p3p7"])
def test_a_config_with_top_block_builds_the_same_model(neck, levels):
    if neck == "build_nasfpn_backbone" and levels == "p2p6":
        pytest.skip("the NAS-FPN cell is defined on 5 levels P3-P7")
    new = _new_keys(neck, levels)
    old = new.clone()
    old.MODEL.FPN.NUM_EXTRA_LEVELS, old.MODEL.FPN.EXTRA_LEVEL_TYPE = 1, "maxpool"  # defaults
    old.MODEL.FPN.TOP_BLOCK = "maxpool" if levels == "p2p6" else "p6p7"
    check_config(old)
    torch.manual_seed(0)
    model_old = build_backbone(old).eval()
    torch.manual_seed(0)
    model_new = build_backbone(new).eval()
    assert _shapes(model_old) == _shapes(model_new)  # same weights keys and shapes
    assert model_old.output_shape() == model_new.output_shape()
    model_new.load_state_dict(model_old.state_dict())
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        a, b = model_old(x), model_new(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_conv_extra_levels_are_p6p7_convs_for_fpn_and_refused_by_pooling_necks():
    cfg = _new_keys("build_fpn_backbone", "p3p7")
    assert cfg.MODEL.FPN.EXTRA_LEVEL_TYPE == "conv"
    neck = build_backbone(cfg)
    # Detectron2's P6/P7 convs (top_block.p6 / p7) load onto two 3x3 stride-2 convs.
    aliases = {k: v for k, v in neck._checkpoint_aliases.items() if k.startswith("top_block")}
    assert list(aliases) == ["top_block.p6", "top_block.p7"]
    state = neck.state_dict()
    for ours in aliases.values():
        assert state[ours + ".weight"].shape[-2:] == (3, 3)
    for neck in POOLED:
        cfg = _new_keys(neck, "p3p7")
        cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = "conv"
        for run in (check_config, build_backbone):
            with pytest.raises(ValueError, match="EXTRA_LEVEL_TYPE='conv' is not supported by"):
                run(cfg)


@pytest.mark.parametrize("num,kind", [(2, "maxpool"), (1, "conv"), (3, "conv")])
def test_fpn_refuses_extra_levels_it_cannot_make(num, kind):
    cfg = _new_keys("build_fpn_backbone", "p2p6")
    cfg.MODEL.FPN.NUM_EXTRA_LEVELS, cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = num, kind
    match = f"NUM_EXTRA_LEVELS={num} with MODEL.FPN.EXTRA_LEVEL_TYPE='{kind}' is not an FPN top"
    for run in (check_config, build_backbone):
        with pytest.raises(ValueError, match=match):
            run(cfg)


def test_no_extra_levels():
    cfg = _new_keys("build_bifpn_backbone", "p3p7")
    cfg.MODEL.FPN.NUM_EXTRA_LEVELS = 0
    cfg.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128]]
    check_config(cfg)
    assert list(build_backbone(cfg).output_shape()) == ["p3", "p4", "p5"]


@pytest.mark.parametrize(
    "key,value,error,match",
    [
        ("NUM_EXTRA_LEVELS", -1, ValueError, "NUM_EXTRA_LEVELS=-1 must be at least 0"),
        ("NUM_EXTRA_LEVELS", "2", TypeError, "NUM_EXTRA_LEVELS='2' must be an integer"),
        ("EXTRA_LEVEL_TYPE", "avgpool", ValueError, "EXTRA_LEVEL_TYPE='avgpool' is not one of"),
    ],
)
def test_extra_level_keys_are_checked(key, value, error, match):
    cfg = _new_keys("build_fpn_backbone", "p2p6")
    cfg.MODEL.FPN[key] = value
    with pytest.raises(error, match=match):
        check_config(cfg)


def test_top_block_contradicting_the_new_keys_says_what_to_change():
    cfg = _new_keys("build_bifpn_backbone", "p3p7")  # 2 maxpool levels
    cfg.MODEL.FPN.TOP_BLOCK = "maxpool"  # 1 level
    message = (
        "MODEL.FPN.TOP_BLOCK='maxpool' is replaced by MODEL.FPN.NUM_EXTRA_LEVELS=1 and "
        "MODEL.FPN.EXTRA_LEVEL_TYPE='maxpool' for this neck, but they are set to 2 and "
        "'maxpool': remove MODEL.FPN.TOP_BLOCK"
    )
    for run in (check_config, build_backbone):
        with pytest.raises(ValueError) as e:
            run(cfg)
        assert str(e.value) == message
    # Agreeing with it is fine (a config dumped by an older version, then edited).
    cfg.MODEL.FPN.TOP_BLOCK = "p6p7"
    check_config(cfg)


def _zoo_neck(path: str):
    """The config of a model zoo release, checked, and its neck built (levels checked)."""
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.MODEL.DEVICE = "cpu"
    check_config(cfg)
    neck = build_backbone(cfg)
    levels = [f"p{level}" for level in (range(3, 8) if "retinanet" in path else range(2, 7))]
    assert list(neck.output_shape()) == levels
    return cfg, neck


@pytest.mark.parametrize("path", OLD_ZOO_CONFIGS, ids=os.path.basename)
def test_model_zoo_configs_written_with_top_block_build_as_before(path):
    """Model zoo configs of earlier releases (full dumps, MODEL.FPN.TOP_BLOCK and MODEL.FPN.NORM,
    no new keys) merge and build the neck they were trained with."""
    cfg, neck = _zoo_neck(path)
    assert cfg.MODEL.FPN.TOP_BLOCK in ("maxpool", "p6p7")
    expected = {"BN": {torch.nn.BatchNorm2d}, "": set()}[cfg.MODEL.FPN.NORM]
    assert _neck_norms(neck) == expected


@pytest.mark.parametrize("path", ZOO_CONFIGS, ids=os.path.basename)
def test_the_model_zoo_configs_build_their_neck_with_its_levels_and_norm(path):
    """Today's releases' configs (the new keys): the paper necks without a norm, BiFPN and
    NAS-FPN with the group norm of the CPU configs."""
    cfg, neck = _zoo_neck(path)
    assert cfg.MODEL.FPN.TOP_BLOCK is None
    deep = "BiFPN" in path or "NASFPN" in path
    assert _neck_norms(neck) == ({torch.nn.GroupNorm} if deep else set())


@pytest.mark.parametrize(
    "neck,node", [("build_bifpn_backbone", "BIFPN"), ("build_nasfpn_backbone", "NASFPN")]
)
def test_switching_only_the_builder_keeps_the_paper_norm(neck, node):
    """A FPN config (MODEL.FPN.NORM "", Detectron2's default) with only MODEL.BACKBONE.NAME
    changed gives BiFPN / NAS-FPN with batch norm, as their papers."""
    cfg = make_cfg("build_fpn_backbone", levels="p3p7")
    assert cfg.MODEL.FPN.NORM == ""
    cfg.MODEL.BACKBONE.NAME = neck
    cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = "maxpool"  # as their RetinaNet configs: P6, P7 pooled
    cfg.MODEL[node].NUM_REPEATS = 1
    check_config(cfg)
    assert _neck_norms(build_backbone(cfg)) == {torch.nn.BatchNorm2d}
    # Their own key selects another norm; MODEL.FPN.NORM left at "" does not interfere.
    cfg.MODEL[node].NORM = ""
    assert _neck_norms(build_backbone(cfg)) == set()
    # Both set and different: an error naming both keys.
    cfg.MODEL.FPN.NORM = "GN"
    for run in (check_config, build_backbone):
        with pytest.raises(
            ValueError, match=f"MODEL.{node}.NORM='' is this neck's norm, but MODEL.FPN.NORM='GN'"
        ):
            run(cfg)


def test_the_fpn_norm_is_not_read_by_bifpn_when_its_own_key_is_set():
    cfg = make_cfg("build_bifpn_backbone", levels="p3p7", channels=64)
    cfg.MODEL.BIFPN.NUM_REPEATS = 1
    cfg.MODEL.BIFPN.NORM = "GN"
    assert _neck_norms(build_backbone(cfg)) == {torch.nn.GroupNorm}


@pytest.mark.parametrize(
    "neck,key",
    [("build_fpn_backbone", "MODEL.FPN.NORM"), ("build_bifpn_backbone", "MODEL.BIFPN.NORM")],
)
@pytest.mark.parametrize("channels", [32, 48, 80])
def test_group_norm_needs_at_least_two_channels_per_group(neck, key, channels):
    cfg = make_cfg(neck, levels="p3p7", channels=channels)
    cfg.MODEL[key.split(".")[1]].NORM = "GN"
    with pytest.raises(
        ValueError,
        match=f"{key}='GN' uses 32 groups, so MODEL.FPN.OUT_CHANNELS={channels} must be a "
        "multiple of 32 and at least 64",
    ):
        check_config(cfg)
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    check_config(cfg)


def test_group_norm_over_one_channel_per_group_fails_on_a_1x1_level():
    """The reason for the check, which the builders run too: at 32 channels, GN's groups are
    single channels; on a 1x1 P7 they hold one value, which PyTorch refuses in training (one
    image) and which normalises to the bias alone."""
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.GroupNorm(32, 32).train()(torch.rand(1, 32, 1, 1))
    cfg = make_cfg("build_bifpn_backbone", levels="p3p7", channels=32)
    cfg.MODEL.BIFPN.NUM_REPEATS, cfg.MODEL.BIFPN.NORM = 1, "GN"
    with pytest.raises(ValueError, match="MODEL.BIFPN.NORM='GN' uses 32 groups"):
        build_backbone(cfg)
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    build_backbone(cfg).train()(torch.rand(1, 3, 65, 65))  # P7: stride 128, one pixel


def test_the_old_key_warning_is_logged_once(monkeypatch):
    """check_config and the builder both read MODEL.FPN.TOP_BLOCK: one warning, not two."""
    from collections import Counter

    import detectron2.utils.logger

    monkeypatch.setattr(detectron2.utils.logger, "_LOG_COUNTER", Counter())  # a fresh process
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("fpn_variants.necks.options")
    logger.addHandler(handler)
    try:
        cfg = _new_keys("build_fpn_backbone", "p3p7")
        cfg.MODEL.FPN.NUM_EXTRA_LEVELS, cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = 1, "maxpool"  # defaults
        cfg.MODEL.FPN.TOP_BLOCK = "p6p7"
        check_config(cfg)
        build_backbone(cfg)
    finally:
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert messages == [
        "MODEL.FPN.TOP_BLOCK='p6p7' is replaced by MODEL.FPN.NUM_EXTRA_LEVELS=2 and "
        "MODEL.FPN.EXTRA_LEVEL_TYPE='conv' for this neck: set these keys and remove "
        "MODEL.FPN.TOP_BLOCK from the config"
    ]
