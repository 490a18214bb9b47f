"""Config checks run by ``engine.setup`` before anything is built: errors name the key, the bad
value and the valid choices; YAML python tags never run."""

import pytest
import yaml
from detectron2.modeling import build_backbone

from fpn_variants.config import check_config
from fpn_variants.engine import argument_parser, setup

from .test_engine import CONFIG
from .utils import make_cfg


def _setup(tmp_path, *opts, config=CONFIG):
    args = argument_parser().parse_args(
        ["--config-file", config, "OUTPUT_DIR", str(tmp_path), *opts]
    )
    return setup(args)


def test_unknown_builder_lists_the_registered_ones(tmp_path):
    with pytest.raises(KeyError) as e:
        _setup(tmp_path, "MODEL.BACKBONE.NAME", "build_bifpn")
    message = str(e.value)
    assert "MODEL.BACKBONE.NAME='build_bifpn' is not registered" in message
    assert "the fpn_variants necks are ['build_fpn_backbone', 'build_panet_backbone'," in message
    assert "'build_resnet_backbone'" in message  # every registered name


@pytest.mark.parametrize(
    "neck,key,value,error,message",
    [
        (None, "MODEL.META_ARCHITECTURE", "FasterRCNN", KeyError, "META_ARCHITECTURE='FasterRCNN"),
        (None, "MODEL.FPN.NORM", "XN", ValueError, "MODEL.FPN.NORM='XN' is not one of ['', 'BN'"),
        (None, "MODEL.RESNETS.NORM", "bn", ValueError, "MODEL.RESNETS.NORM='bn' is not one of"),
        (None, "MODEL.FPN.OUT_CHANNELS", 64.0, TypeError, "OUT_CHANNELS=64.0 must be an integer"),
        (
            "build_bifpn_backbone",
            "MODEL.BIFPN.NUM_REPEATS",
            "3",
            TypeError,
            "MODEL.BIFPN.NUM_REPEATS='3' must be an integer, not str",
        ),
        (
            "build_nasfpn_backbone",
            "MODEL.NASFPN.ACTIVATION",
            "tanh",
            ValueError,
            "MODEL.NASFPN.ACTIVATION='tanh' is not one of ['', 'relu', 'swish']",
        ),
        (
            "build_panet_backbone",
            "MODEL.BIFPN.FUSION",
            "sum",
            ValueError,
            "MODEL.BIFPN.FUSION='sum' only apply to MODEL.BACKBONE.NAME='build_bifpn_backbone'",
        ),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_choices(neck, key, value, error, message):
    cfg = make_cfg(neck or "build_fpn_backbone")
    node, leaf = key.rsplit(".", 1)
    target = cfg
    for part in node.split("."):
        target = target[part]
    target[leaf] = value  # set in Python: YAML and merge_from_list would reject some types
    with pytest.raises(error) as e:
        check_config(cfg)
    assert message in str(e.value)


def test_group_norm_needs_channels_in_groups_of_32():
    cfg = make_cfg(channels=48)
    cfg.MODEL.FPN.NORM = "GN"
    with pytest.raises(ValueError, match="MODEL.FPN.NORM='GN' .* MODEL.FPN.OUT_CHANNELS=48 must"):
        check_config(cfg)


@pytest.mark.parametrize("count", [0, -2])
def test_nasfpn_repeat_count_out_of_range(count):
    cfg = make_cfg("build_nasfpn_backbone", levels="p3p7")
    cfg.MODEL.NASFPN.NUM_REPEATS = count
    check_config(cfg)  # an integer: the builder checks the range
    with pytest.raises(ValueError, match=f"MODEL.NASFPN.NUM_REPEATS={count} must be at least 1"):
        build_backbone(cfg)


def test_config_files_never_run_python_tags(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(
        f'_BASE_: "{CONFIG}"\nOUTPUT_DIR: !!python/object/apply:os.mkdir ["{marker}"]\n'
    )
    with pytest.raises(yaml.constructor.ConstructorError):
        _setup(tmp_path, config=str(config))
    assert not marker.exists()
