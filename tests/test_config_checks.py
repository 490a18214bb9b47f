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
    for run in (check_config, build_backbone):  # the same check, from the declaration
        with pytest.raises(ValueError, match=f"MODEL.NASFPN.NUM_REPEATS={count} must be at least"):
            run(cfg)


def test_config_files_never_run_python_tags(tmp_path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(
        f'_BASE_: "{CONFIG}"\nOUTPUT_DIR: !!python/object/apply:os.mkdir ["{marker}"]\n'
    )
    with pytest.raises(yaml.constructor.ConstructorError):
        _setup(tmp_path, config=str(config))
    assert not marker.exists()


CUSTOM_BIFPN = {"MODEL.BIFPN.TOPOLOGY": "custom"}
CUSTOM_NASFPN = {"MODEL.NASFPN.CELL": "custom"}
# A valid custom NAS-FPN cell on P3-P7 (ids 0..4 are the inputs, block k is 5 + k).
BLOCKS = [[4, "sum", [1, 2], False], [3, "sum", [0, 5], True], [4, "sum", [5, 6], True]]
BLOCKS += [
    [5, "global_attention", [6, 7], True],
    [6, "sum", [3, 8], True],
    [7, "sum", [4, 9], True],
]
BIFPN_ROW = "A row is [level, [input ids]], e.g. [4, [1, 2]]"
NASFPN_ROW = "A row is [level, 'sum' or 'global_attention', [id a, id b], is_output]"


def _blocks(index, row):
    blocks = [list(b) for b in BLOCKS]
    blocks[index] = row
    return blocks


@pytest.mark.parametrize(
    "neck,settings,error,message",
    [
        # Rows of the wrong form name the key, the row and what a valid row looks like.
        (
            "build_bifpn_backbone",
            {**CUSTOM_BIFPN, "MODEL.BIFPN.NODES": [[4, [1, 2]], [3]]},
            ValueError,
            "MODEL.BIFPN.NODES[1]=[3] is not a valid row: it must be a list of 2 items. "
            + BIFPN_ROW,
        ),
        (
            "build_bifpn_backbone",
            {**CUSTOM_BIFPN, "MODEL.BIFPN.NODES": [[3, 0]]},
            ValueError,
            "MODEL.BIFPN.NODES[0]=[3, 0] is not a valid row: the input ids must be a non-empty "
            f"list of integers >= 0. {BIFPN_ROW}",
        ),
        (
            "build_bifpn_backbone",
            {**CUSTOM_BIFPN, "MODEL.BIFPN.NODES": [[3, []]]},
            ValueError,
            "MODEL.BIFPN.NODES[0]=[3, []] is not a valid row: the input ids must be a non-empty",
        ),
        (
            "build_bifpn_backbone",
            {**CUSTOM_BIFPN, "MODEL.BIFPN.NODES": [["4", [1, 2]]]},
            ValueError,
            "MODEL.BIFPN.NODES[0]=['4', [1, 2]] is not a valid row: the level must be an integer",
        ),
        (
            "build_bifpn_backbone",
            CUSTOM_BIFPN,
            ValueError,
            "MODEL.BIFPN.TOPOLOGY='custom' needs MODEL.BIFPN.NODES, a non-empty list of rows, "
            f"not []. {BIFPN_ROW}",
        ),
        (
            "build_nasfpn_backbone",
            {**CUSTOM_NASFPN, "MODEL.NASFPN.BLOCKS": _blocks(2, [4, "sum", [5, 6]])},
            ValueError,
            "MODEL.NASFPN.BLOCKS[2]=[4, 'sum', [5, 6]] is not a valid row: it must be a list of 4 "
            f"items. {NASFPN_ROW}",
        ),
        (
            "build_nasfpn_backbone",
            {
                **CUSTOM_NASFPN,
                "MODEL.NASFPN.BLOCKS": _blocks(3, [5, "global_attention", [6, 7], 1]),
            },
            ValueError,
            "MODEL.NASFPN.BLOCKS[3]=[5, 'global_attention', [6, 7], 1] is not a valid row: "
            "is_output must be True or False",
        ),
        (
            "build_nasfpn_backbone",
            {
                **CUSTOM_NASFPN,
                "MODEL.NASFPN.BLOCKS": _blocks(3, [5, "global_attention", [6], True]),
            },
            ValueError,
            "MODEL.NASFPN.BLOCKS[3]=[5, 'global_attention', [6], True] is not a valid row: "
            "'global_attention' merges exactly 2 inputs",
        ),
        (
            "build_nasfpn_backbone",
            CUSTOM_NASFPN,
            ValueError,
            "MODEL.NASFPN.CELL='custom' needs MODEL.NASFPN.BLOCKS, a non-empty list of rows, "
            f"not []. {NASFPN_ROW}",
        ),
        # A global attention on 3 inputs would ignore the third; 'no' is not a bool.
        (
            "build_nasfpn_backbone",
            {
                **CUSTOM_NASFPN,
                "MODEL.NASFPN.BLOCKS": _blocks(3, [5, "global_attention", [6, 7, 2], True]),
            },
            ValueError,
            "MODEL.NASFPN.BLOCKS[3]=[5, 'global_attention', [6, 7, 2], True] is not a valid row: "
            "'global_attention' merges exactly 2 inputs",
        ),
        (
            "build_nasfpn_backbone",
            {**CUSTOM_NASFPN, "MODEL.NASFPN.BLOCKS": _blocks(0, [4, "sum", [1, 2], "no"])},
            ValueError,
            "MODEL.NASFPN.BLOCKS[0]=[4, 'sum', [1, 2], 'no'] is not a valid row: is_output must",
        ),
        # A table the chosen topology would ignore.
        (
            "build_bifpn_backbone",
            {"MODEL.BIFPN.NODES": [[4, [1, 2]]]},
            ValueError,
            "MODEL.BIFPN.NODES is only read with MODEL.BIFPN.TOPOLOGY='custom', but "
            "MODEL.BIFPN.TOPOLOGY='bifpn': remove MODEL.BIFPN.NODES or set",
        ),
        (
            "build_nasfpn_backbone",
            {"MODEL.NASFPN.BLOCKS": BLOCKS},
            ValueError,
            "MODEL.NASFPN.BLOCKS is only read with MODEL.NASFPN.CELL='custom', but "
            "MODEL.NASFPN.CELL='nasfpn': remove MODEL.NASFPN.BLOCKS or set",
        ),
        # Bool keys take only bools (YAML and merge_from_list check types, Python does not).
        (
            "build_bifpn_backbone",
            {"MODEL.BIFPN.SEPARABLE_CONV": "no"},
            TypeError,
            "MODEL.BIFPN.SEPARABLE_CONV='no' must be True or False, not str",
        ),
        (
            "build_nasfpn_backbone",
            {"MODEL.NASFPN.SEPARABLE_CONV": 1},
            TypeError,
            "MODEL.NASFPN.SEPARABLE_CONV=1 must be True or False, not int",
        ),
    ],
    ids=[
        "node-of-1-item",
        "node-ids-not-a-list",
        "node-without-inputs",
        "node-level-string",
        "empty-nodes",
        "block-of-3-items",
        "is-output-int",
        "attention-on-1-input",
        "empty-blocks",
        "attention-on-3-inputs",
        "is-output-no",
        "nodes-ignored",
        "blocks-ignored",
        "bifpn-bool-string",
        "nasfpn-bool-int",
    ],
)
def test_custom_tables_and_bool_keys_are_checked_before_building(neck, settings, error, message):
    """check_config refuses them with the key, the row and a valid row; the builders (the
    classes, which can be called from Python) refuse the same values the same way."""
    cfg = make_cfg(neck, "p3p7")
    for key, value in settings.items():
        node, leaf = key.rsplit(".", 1)
        cfg.MODEL[node.split(".")[1]][leaf] = value
    with pytest.raises(error) as e:
        check_config(cfg)
    assert message in str(e.value)
    with pytest.raises(error) as e:
        build_backbone(cfg)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "neck,settings,message",
    [
        (
            "build_bifpn_backbone",
            {**CUSTOM_BIFPN, "MODEL.BIFPN.NODES": [[4, [1, 2]], [3, [0, 9]]]},
            "MODEL.BIFPN.NODES[1]=[3, [0, 9]] reads feature 9, but only ids 0..5 exist before "
            "it (0..4: the inputs P3..P7, row j: 5 + j)",
        ),
        (
            "build_bifpn_backbone",
            {**CUSTOM_BIFPN, "MODEL.BIFPN.NODES": [[8, [4]]]},
            "MODEL.BIFPN.NODES[0]=[8, [4]] has level 8, outside the neck's levels 3..7",
        ),
        (
            "build_nasfpn_backbone",
            {**CUSTOM_NASFPN, "MODEL.NASFPN.BLOCKS": _blocks(0, [2, "sum", [1, 2], False])},
            "MODEL.NASFPN.BLOCKS[0]=[2, 'sum', [1, 2], False] has level 2, outside the neck's "
            "levels 3..7",
        ),
        (
            "build_nasfpn_backbone",
            {**CUSTOM_NASFPN, "MODEL.NASFPN.BLOCKS": _blocks(5, [7, "sum", [4, 9], False])},
            "MODEL.NASFPN.BLOCKS: a cell needs one output block (is_output True) per level "
            "3..7; levels without one: [7]",
        ),
    ],
    ids=["node-reads-later-id", "node-level-8", "block-level-2", "cell-without-p7"],
)
def test_custom_tables_reading_what_does_not_exist_are_refused_by_the_builder(
    neck, settings, message
):
    """The levels come from the bottom-up network: the builder checks them before the neck."""
    cfg = make_cfg(neck, "p3p7")
    cfg.merge_from_list([x for kv in settings.items() for x in kv])
    check_config(cfg)
    with pytest.raises(ValueError) as e:
        build_backbone(cfg)
    assert message in str(e.value)
