"""Node tables equal the published definitions; exact parameter counts of canonical configs."""

import pytest
from detectron2.modeling import build_backbone

from fpn_variants import BiFPN
from fpn_variants.necks.specs import (
    NASFPN_CELL,
    bifpn_nodes,
    custom_nodes,
    fpn_nodes,
    nasfpn_nodes,
    pan_nodes,
    panet_nodes,
)

from .utils import EFFDET_D0, StridedBackbone, make_cfg, neck_parameters

# google/automl efficientdet/tf2/fpn_configs_test.py: (feat_level, inputs_offsets) per node.
AUTOML_BIFPN_L3L7 = [
    (6, [3, 4]),
    (5, [2, 5]),
    (4, [1, 6]),
    (3, [0, 7]),
    (4, [1, 7, 8]),
    (5, [2, 6, 9]),
    (6, [3, 5, 10]),
    (7, [4, 11]),
]
AUTOML_BIFPN_L2L7 = [
    (6, [4, 5]),
    (5, [3, 6]),
    (4, [2, 7]),
    (3, [1, 8]),
    (2, [0, 9]),
    (3, [1, 9, 10]),
    (4, [2, 8, 11]),
    (5, [3, 7, 12]),
    (6, [4, 6, 13]),
    (7, [5, 14]),
]


@pytest.mark.parametrize(
    "min_level,expected", [(3, AUTOML_BIFPN_L3L7), (2, AUTOML_BIFPN_L2L7)], ids=["l3l7", "l2l7"]
)
def test_bifpn_tables_equal_automl(min_level, expected):
    nodes = bifpn_nodes(min_level, 7)
    assert [(n.level, list(n.inputs)) for n in nodes] == expected
    assert all(n.fusion == "fast_normalized" and n.post for n in nodes)
    num_inputs = 8 - min_level
    last_per_level = {}
    for k, n in enumerate(nodes):
        last_per_level[n.level] = k
    assert [k for k, n in enumerate(nodes) if n.is_output] == sorted(last_per_level.values())
    assert len(last_per_level) == num_inputs


def test_pan_layout_has_no_same_level_skips():
    assert [(n.level, n.inputs) for n in pan_nodes(3, 5)] == [
        (4, (1, 2)),
        (3, (0, 3)),
        (4, (3, 4)),
        (5, (2, 5)),
    ]


def test_nasfpn_table_applies_the_unconsumed_feature_rule():
    nodes = nasfpn_nodes(NASFPN_CELL, [3, 4, 5, 6, 7])
    assert [(n.level, n.fusion, n.inputs, n.is_output) for n in nodes] == [
        (lvl, op, ab, out) for lvl, op, ab, out in NASFPN_CELL
    ]
    # "+ P5" in block 5 and "+ P7" in block 6: the only inputs no block consumed.
    assert [n.residuals for n in nodes] == [(), (), (), (), (2,), (4,), ()]
    assert sorted(n.level for n in nodes if n.is_output) == [3, 4, 5, 6, 7]


def test_fpn_and_panet_tables():
    fpn = fpn_nodes(4, 2)
    assert [(n.level, n.inputs, n.post, n.is_output) for n in fpn] == [
        (5, (3,), False, False),
        (4, (2, 4), False, False),
        (3, (1, 5), False, False),
        (2, (0, 6), False, False),
        (2, (7,), True, True),
        (3, (6,), True, True),
        (4, (5,), True, True),
        (5, (4,), True, True),
    ]
    official = panet_nodes(4, 2)[len(fpn) :]
    assert [(n.level, n.inputs, n.post) for n in official] == [
        (3, (8, 9), True),
        (4, (12, 10), True),
        (5, (13, 11), True),
    ]
    mmdet = panet_nodes(4, 2, ordering="mmdet")[len(fpn) :]
    assert [(n.level, n.inputs, n.post, n.is_output) for n in mmdet] == [
        (3, (8, 9), False, False),
        (3, (12,), True, True),
        (4, (12, 10), False, False),
        (4, (14,), True, True),
        (5, (14, 11), False, False),
        (5, (16,), True, True),
    ]


def test_custom_table_outputs_and_errors():
    nodes, passthrough = custom_nodes([(3, [0, 1])], 3, 5, "sum")
    assert nodes[0].is_output and passthrough == [1, 2]
    with pytest.raises(ValueError, match="outside the neck's levels 3..5"):
        custom_nodes([(7, [0])], 3, 5, "sum")


@pytest.mark.parametrize(
    "neck,options,expected",
    [
        # mmdetection PAFPN, P2-P6 (REFERENCE.md 2.5): FPN + 6 x 590,080.
        ("build_panet_backbone", {"PANET.ORDERING": "mmdet", "PANET.ACTIVATION": ""}, 6_884_864),
        # mmdetection NASFPN 7 x 256, BN, start_level=1.
        ("build_nasfpn_backbone", {"NASFPN.REFERENCE": "mmdet", "FPN.NORM": "BN"}, 29_990_144),
        # The authors' TF NAS-FPN at the same settings.
        ("build_nasfpn_backbone", {"NASFPN.REFERENCE": "tf", "FPN.NORM": "BN"}, 29_858_816),
    ],
)
def test_parameter_counts_at_canonical_r50_configs(neck, options, expected):
    cfg = make_cfg(neck, levels="p3p7" if "nasfpn" in neck else "p2p6", channels=256)
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    cfg.merge_from_list([x for k, v in options.items() for x in ("MODEL." + k, v)])
    assert neck_parameters(build_backbone(cfg)) == expected


def test_bifpn_d0_parameter_count_equals_effdet():
    # EfficientDet-D0: EfficientNet-B0 C3-C5 (40, 112, 320 channels), 64 channels, 3 layers.
    neck = BiFPN(
        bottom_up=StridedBackbone({3: 40, 4: 112, 5: 320}),
        in_features=["c3", "c4", "c5"],
        **EFFDET_D0,
    )
    assert neck_parameters(neck) == 196_281
    assert [s.stride for s in neck.output_shape().values()] == [8, 16, 32, 64, 128]
