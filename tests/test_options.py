"""Each neck option is declared once (fpn_variants/necks/options.py): the constructors' defaults,
the config keys, the checks and the README's tables all come from the declarations. A value the
config check refuses, the constructor refuses for the same reason (naming the argument instead
of the key), and the reverse."""

import inspect
import os
import re

import pytest
from detectron2.config import get_cfg

import fpn_variants
from fpn_variants.config import check_config
from fpn_variants.option_tables import option_tables
from fpn_variants.registry import ALL_BUILDERS, config_options

from .utils import StridedBackbone, make_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Constructor arguments that are not config options: the geometry and Python-only settings.
NOT_OPTIONS = {"bottom_up", "in_features", "bottom_up_path", "norm_eps", "norm_momentum"}
# One builder per neck class (the single-scale rows share theirs).
NECKS = {cls: builder for builder, cls in ALL_BUILDERS.items()}


def _levels(builder: str) -> str:
    return "p3p7" if builder == "build_nasfpn_backbone" else "p2p6"


def test_constructor_defaults_are_the_declared_ones():
    for cls in NECKS:
        parameters = inspect.signature(cls.__init__).parameters
        declared = {option.arg: option for option in cls.options}
        arguments = {name for name in parameters if name != "self"}
        assert arguments - NOT_OPTIONS == set(declared), cls
        for arg, option in declared.items():
            assert parameters[arg].default == option.default, (cls, arg)


def test_the_config_keys_and_defaults_are_the_declared_ones():
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    for cls in NECKS:
        for option in cls.options:
            node, leaf = option.key.split(".")
            assert cfg.MODEL[node][leaf] == option.config_default, option.config_key
            # Detectron2's own keys are Detectron2's, at the same default.
            assert (leaf in get_cfg().MODEL.get(node, {})) == option.detectron2, option.config_key
            # A key shared by several necks has one type and default.
            shared = config_options()[option.config_key]
            assert (shared.type, shared.default) == (option.type, option.default)


def _bad_values(option):
    """Values of the wrong type, outside the choices and under the minimum."""
    wrong_type = {bool: "no", int: "3", str: 3, list: 5}[option.type]
    values = [wrong_type]
    if option.choices:
        values.append("not-a-choice")
    if option.minimum is not None:
        values.append(option.minimum - 1)
    return values


# Values refused by checks of several options at once: {key: value} over make_cfg's config.
COMBINATIONS = [
    ("build_fpn_backbone", {"FPN.NORM": "GN"}),  # at 32 channels
    ("build_fpn_backbone", {"FPN.NUM_EXTRA_LEVELS": 2}),  # 2 "maxpool" levels
    ("build_panet_backbone", {"FPN.NORM": "GN"}),
    ("build_bifpn_backbone", {"BIFPN.NORM": "GN"}),
    ("build_bifpn_backbone", {"FPN.EXTRA_LEVEL_TYPE": "conv"}),
    ("build_bifpn_backbone", {"BIFPN.NODES": [[4, [1, 2]]]}),  # TOPOLOGY is not "custom"
    ("build_bifpn_backbone", {"BIFPN.TOPOLOGY": "custom", "BIFPN.NODES": [[4, []]]}),
    ("build_nasfpn_backbone", {"NASFPN.NORM": "GN", "FPN.OUT_CHANNELS": 48}),
    ("build_nasfpn_backbone", {"NASFPN.BLOCKS": [[4, "sum", [1, 2], True]]}),
    ("build_nasfpn_backbone", {"NASFPN.CELL": "custom", "NASFPN.BLOCKS": [[4, "max", [1], 1]]}),
]


def _cases():
    for cls, builder in NECKS.items():
        for option in cls.options:
            for value in _bad_values(option):
                yield builder, {option.key: value}
    yield from COMBINATIONS


def _error(run):
    try:
        run()
    except (TypeError, ValueError) as e:
        return type(e), str(e)
    return None


def _in_python_terms(cls, message: str) -> str:
    """A config check's message with each key replaced by its argument."""
    for option in sorted(cls.options, key=lambda o: -len(o.config_key)):
        message = message.replace(option.config_key, option.arg)
    return message


@pytest.mark.parametrize("builder,values", list(_cases()), ids=str)
def test_the_config_check_and_the_constructor_refuse_the_same_values(builder, values):
    cls = ALL_BUILDERS[builder]
    cfg = make_cfg(builder, levels=_levels(builder))
    arguments = cls.options_from_config(cfg)  # valid: the constructor's arguments
    by_key = {option.key: option.arg for option in cls.options}
    for key, value in values.items():
        node, leaf = key.split(".")
        cfg.MODEL[node][leaf] = value  # set in Python: YAML would refuse some types
        arguments[by_key[key]] = value
    from_config = _error(lambda: check_config(cfg))
    assert from_config is not None, values
    bottom_up = StridedBackbone({2: 8, 3: 8, 4: 8, 5: 8})
    features = [f"c{lvl}" for lvl in (2, 3, 4, 5)][-len(cfg.MODEL.FPN.IN_FEATURES) :]
    from_python = _error(lambda: cls(bottom_up=bottom_up, in_features=features, **arguments))
    assert from_python == (from_config[0], _in_python_terms(cls, from_config[1]))
    assert not re.search(r"MODEL\.", from_python[1]), from_python[1]


@pytest.mark.parametrize("builder", list(NECKS.values()))
def test_the_values_the_config_check_accepts_the_constructor_accepts(builder):
    """Every choice and minimum of every option, one at a time."""
    cls = ALL_BUILDERS[builder]
    for option in cls.options:
        for value in [*option.choices, *([option.minimum] if option.minimum is not None else [])]:
            cfg = make_cfg(builder, levels=_levels(builder), channels=64)
            if option.key == "FPN.EXTRA_LEVEL_TYPE" or option.key == "FPN.NUM_EXTRA_LEVELS":
                cfg.MODEL.FPN.NUM_EXTRA_LEVELS = 0  # every type and number of FPN's is valid
            node, leaf = option.key.split(".")
            cfg.MODEL[node][leaf] = option.config_default if value is None else value
            if option.key in ("BIFPN.TOPOLOGY", "NASFPN.CELL") and value == "custom":
                continue  # needs its table: test_config_checks
            check_config(cfg)
            cls.check_options(cls.options_from_config(cfg))  # what the constructor runs


def test_the_readme_option_tables_are_the_declarations():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = re.search(r"<!-- options:begin -->\n(.*?)<!-- options:end -->", readme, re.S)
    assert section is not None, "README.md has no options markers"
    assert section.group(1) == option_tables(), "run: python tools/update_readme.py"


# Values refused only while the neck is built (they need the bottom-up levels or the node
# table): {key: value} over make_cfg's config.
BUILD_TIME = [
    ("build_fpn_backbone", {"FPN.IN_FEATURES": ["res2", "res4"]}),
    ("build_single_scale_backbone", {}),  # four features
    ("build_fpn_backbone", {"FPN.NUM_EXTRA_LEVELS": 2, "FPN.EXTRA_LEVEL_TYPE": "conv",
                            "FPN.TOP_BLOCK_IN": "res4"}),  # fmt: skip
    ("build_bifpn_backbone", {"BIFPN.TOPOLOGY": "custom", "BIFPN.NODES": [[9, [0]]]}),
    ("build_bifpn_backbone", {"BIFPN.TOPOLOGY": "custom", "BIFPN.NODES": [[3, [7]]]}),
    ("build_nasfpn_backbone", {"FPN.NUM_EXTRA_LEVELS": 1}),  # the cell needs 5 levels
    ("build_nasfpn_backbone", {"NASFPN.CELL": "custom", "NASFPN.BLOCKS": [[4, "sum", [1], True]]}),
]


@pytest.mark.parametrize("builder,values", BUILD_TIME, ids=str)
def test_errors_found_while_building_name_the_key_or_the_argument_as_the_caller(builder, values):
    from detectron2.modeling import build_backbone

    cls = ALL_BUILDERS[builder]
    cfg = make_cfg(builder, levels=_levels(builder))
    for key, value in values.items():
        node, leaf = key.split(".")
        cfg.MODEL[node][leaf] = value
    check_config(cfg)  # not found before building
    from_config = _error(lambda: build_backbone(cfg))
    assert from_config is not None and "MODEL." in from_config[1], from_config
    arguments = cls.options_from_config(cfg)
    bottom_up = build_backbone(make_cfg("build_fpn_backbone")).bottom_up
    features = list(cfg.MODEL.FPN.IN_FEATURES)
    from_python = _error(lambda: cls(bottom_up=bottom_up, in_features=features, **arguments))
    expected = _in_python_terms(cls, from_config[1]).replace("MODEL.FPN.IN_FEATURES", "in_features")
    assert issubclass(from_python[0], from_config[0]) and from_python[1] == expected
