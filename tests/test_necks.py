"""Every registered neck: shapes and strides at any size, gradients, TorchScript, config errors."""

import subprocess
import sys

import pytest
import torch
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from fpn_variants import NASFPN, BiFPN
from fpn_variants.export import script_backbone
from fpn_variants.optimize import optimize_for_inference
from fpn_variants.registry import NECK_BUILDERS

from .utils import StridedBackbone, make_cfg

ALL_NECKS = sorted(NECK_BUILDERS)


def neck_cfg(neck: str, levels: str):
    cfg = make_cfg(neck, levels=levels)
    if neck in ("build_bifpn_backbone", "build_nasfpn_backbone"):
        cfg.MODEL.FPN.NORM = "BN"  # as in their papers
        cfg.MODEL.BIFPN.NUM_REPEATS = 2 if neck == "build_bifpn_backbone" else 3
        cfg.MODEL.NASFPN.NUM_REPEATS = 2 if neck == "build_nasfpn_backbone" else 7
    return cfg


@pytest.mark.parametrize("neck", ALL_NECKS)
@pytest.mark.parametrize("levels", ["p2p6", "p3p7"])
@pytest.mark.parametrize("size", [(64, 64), (65, 65), (333, 517), (1000, 97)])
def test_output_shape_matches_real_tensors(neck, levels, size):
    model = build_backbone(neck_cfg(neck, levels)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))
    shapes = model.output_shape()
    expected_names = (
        ["p2", "p3", "p4", "p5", "p6"] if levels == "p2p6" else ["p3", "p4", "p5", "p6", "p7"]
    )
    assert list(out) == list(shapes) == expected_names
    for name, spec in shapes.items():
        assert spec.stride == 2 ** int(name[1:])
        expected = (1, spec.channels, -(-size[0] // spec.stride), -(-size[1] // spec.stride))
        assert tuple(out[name].shape) == expected, name
        assert torch.isfinite(out[name]).all(), name


@pytest.mark.parametrize("neck", ALL_NECKS)
def test_every_parameter_gets_a_gradient(neck):
    model = build_backbone(neck_cfg(neck, "p3p7")).train()
    out = model(torch.rand(2, 3, 96, 128))
    sum(v.square().mean() for v in out.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("neck", ALL_NECKS)
@pytest.mark.parametrize("levels", ["p2p6", "p3p7"])
def test_torchscript_matches_eager(neck, levels):
    model = build_backbone(neck_cfg(neck, levels)).eval()
    scripted = script_backbone(model)
    x = torch.rand(1, 3, 100, 72)
    with torch.no_grad():
        expected, out = model(x), scripted(x)
    assert list(out) == list(expected)
    for name in expected:
        assert torch.allclose(out[name], expected[name], atol=1e-5), name


def test_builders_are_registered_once_beside_detectron2():
    # Detectron2's own builders first, then ours, then a second import: no registry clash.
    code = (
        "import detectron2.modeling as m; import fpn_variants; import fpn_variants; "
        "names = [k for k, _ in m.BACKBONE_REGISTRY]; "
        "print(sorted(n for n in names if n.startswith('build_') and 'resnet' not in n))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ALL_NECKS:
        assert name in out.stdout
    assert all(name in BACKBONE_REGISTRY for name in ALL_NECKS)


@pytest.mark.parametrize(
    "neck,key,value",
    [
        ("build_fpn_backbone", "MODEL.BIFPN.NUM_REPEATS", 4),
        ("build_panet_backbone", "MODEL.NASFPN.REFERENCE", "mmdet"),
        ("build_nasfpn_backbone", "MODEL.PANET.ACTIVATION", ""),
    ],
)
def test_variant_key_set_for_another_variant_raises(neck, key, value):
    cfg = neck_cfg(neck, "p3p7")
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=f"{key}=.* only apply to .* but MODEL.BACKBONE.NAME="):
        build_backbone(cfg)


@pytest.mark.parametrize(
    "neck,key,value,message",
    [
        ("build_panet_backbone", "MODEL.PANET.ORDERING", "pafpn", "MODEL.PANET.ORDERING='pafpn'"),
        ("build_panet_backbone", "MODEL.PANET.ACTIVATION", "gelu", "ACTIVATION='gelu'"),
        ("build_bifpn_backbone", "MODEL.BIFPN.FUSION", "fast", "MODEL.BIFPN.FUSION='fast'"),
        ("build_bifpn_backbone", "MODEL.BIFPN.TOPOLOGY", "qufpn", "TOPOLOGY='qufpn'"),
        ("build_bifpn_backbone", "MODEL.BIFPN.NUM_REPEATS", 0, "NUM_REPEATS=0 must be at least"),
        ("build_bifpn_backbone", "MODEL.FPN.TOP_BLOCK_IN", "p5", "TOP_BLOCK_IN='p5' is not"),
        ("build_nasfpn_backbone", "MODEL.NASFPN.REFERENCE", "tpu", "REFERENCE='tpu'"),
        ("build_nasfpn_backbone", "MODEL.NASFPN.CELL", "nas", "MODEL.NASFPN.CELL='nas'"),
        ("build_nasfpn_backbone", "MODEL.FPN.NUM_EXTRA_LEVELS", 1, "defined on 5 levels"),
    ],
)
def test_bad_variant_values_name_the_key(neck, key, value, message):
    cfg = neck_cfg(neck, "p3p7")
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=message):
        build_backbone(cfg)


def test_custom_tables_from_yaml_keys():
    cfg = neck_cfg("build_bifpn_backbone", "p3p7")
    # A top-down-only layer: P6, P5, P4, P3 each from the level above; P7 passes through.
    cfg.merge_from_list(
        [
            "MODEL.BIFPN.TOPOLOGY",
            "custom",
            "MODEL.BIFPN.NODES",
            [[6, [3, 4]], [5, [2, 5]], [4, [1, 6]], [3, [0, 7]]],
        ]
    )
    model = build_backbone(cfg).eval()
    assert len(model.cells[0].nodes) == 4
    assert list(model(torch.rand(1, 3, 64, 64))) == ["p3", "p4", "p5", "p6", "p7"]

    cfg = neck_cfg("build_nasfpn_backbone", "p3p7")
    blocks = [[4, "sum", [1, 2], False], [3, "sum", [0, 5], True], [4, "sum", [5, 6], True]]
    blocks += [[5, "global_attention", [6, 7], True], [6, "sum", [3, 8], True]]
    blocks += [[7, "sum", [4, 9], True]]
    cfg.merge_from_list(["MODEL.NASFPN.CELL", "custom", "MODEL.NASFPN.BLOCKS", blocks])
    model = build_backbone(cfg).eval()
    assert list(model(torch.rand(1, 3, 64, 64))) == ["p3", "p4", "p5", "p6", "p7"]


def _bn_neck_with_statistics(neck: str):
    """A neck with batch norms whose running statistics are not trivial, in eval mode."""
    cfg = neck_cfg(neck, "p3p7")
    cfg.MODEL.FPN.NORM = "BN"
    model = build_backbone(cfg)
    assert model.training  # built in training mode, as by build_model
    with torch.no_grad():  # a few training-mode passes give BN non-trivial running statistics
        for _ in range(3):
            model(torch.rand(2, 3, 96, 64))
    return model.eval()


def _norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase)]


@pytest.mark.parametrize("neck", ALL_NECKS)
def test_optimized_model_matches_the_plain_one(neck):
    """optimize_for_inference folds BN into convs and runs the neck NHWC; outputs stay within
    1e-5 (relative to their scale) of the plain model, which it leaves unchanged."""
    model = _bn_neck_with_statistics(neck)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 96, 64)
    fast = optimize_for_inference(model)
    with torch.no_grad():
        plain, optimized = model(x), fast(x)
    assert list(optimized) == list(plain)
    for name in plain:
        scale = max(1.0, plain[name].abs().max().item())
        assert (optimized[name] - plain[name]).abs().max().item() <= 1e-5 * scale, name
    # The BNs are folded and the graphs are NHWC in the copy only.
    assert _norms(model) and not _norms(fast.cells) and not _norms(fast.stem)
    assert not all(v.is_contiguous() for v in optimized.values())
    assert all(v.is_contiguous() for v in plain.values())
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_optimize_for_inference_refuses_a_model_in_training_mode():
    model = build_backbone(neck_cfg("build_bifpn_backbone", "p3p7"))
    with pytest.raises(ValueError, match="eval mode.*model.eval"):
        optimize_for_inference(model)
    model.eval()
    model.cells[0].train()  # a part left in training mode
    with pytest.raises(ValueError, match="cells.0 is in training mode"):
        optimize_for_inference(model)


@pytest.mark.parametrize("neck", ALL_NECKS)
def test_the_built_model_is_plain(neck):
    """The builders give conv -> BN blocks with unfolded norms and NCHW convs, in training and
    eval mode alike (no layout switch on train()/eval())."""
    from fpn_variants.layers.conv import ConvNormAct, SeparableConvNormAct

    model = build_backbone(neck_cfg(neck, "p3p7"))
    for mode in (True, False):
        model.train(mode)
        blocks = [m for m in model.modules() if isinstance(m, (ConvNormAct, SeparableConvNormAct))]
        assert {type(b) for b in blocks} <= {ConvNormAct, SeparableConvNormAct}
        assert all(p.is_contiguous() for p in model.parameters())
        if neck in ("build_bifpn_backbone", "build_nasfpn_backbone"):
            assert all(isinstance(b.norm, torch.nn.BatchNorm2d) for b in blocks)


@pytest.mark.parametrize(
    "neck,levels,key,value,message",
    [
        (
            "build_bifpn_backbone",
            "p2p6",
            "MODEL.RETINANET.IN_FEATURES",
            ["p3", "p4", "p5", "p6", "p7"],
            r"asks for \['p7'\], which the neck does not produce",
        ),
        (
            "build_fpn_backbone",
            "p2p6",
            "MODEL.ANCHOR_GENERATOR.SIZES",
            [[32], [64]],
            "SIZES has 2 entries but MODEL.RPN.IN_FEATURES has 5 levels",
        ),
    ],
)
def test_detector_levels_the_neck_does_not_produce_raise(neck, levels, key, value, message):
    from detectron2.modeling import build_model

    cfg = neck_cfg(neck, levels)
    if key.startswith("MODEL.RETINANET"):
        cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
    else:
        cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.merge_from_list([key, value])
    with pytest.raises(ValueError, match=message):
        build_model(cfg)


def test_custom_bifpn_levels_no_node_writes_are_projected_to_out_channels():
    """The latest feature of each level is its output: a level no node writes is the layer's
    input, projected in the first layer by the 1x1 conv + norm of a BiFPN edge."""
    cfg = neck_cfg("build_bifpn_backbone", "p3p7")  # 2 layers
    # P3 (C3, 128 channels) and P7 are never written.
    nodes = [[4, [1, 2]], [5, [2, 3]], [6, [3, 4]]]
    cfg.merge_from_list(["MODEL.BIFPN.TOPOLOGY", "custom", "MODEL.BIFPN.NODES", nodes])
    model = build_backbone(cfg).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96))
    shapes = model.output_shape()
    assert list(out) == list(shapes) == ["p3", "p4", "p5", "p6", "p7"]
    for name, spec in shapes.items():
        assert out[name].shape[1] == spec.channels == cfg.MODEL.FPN.OUT_CHANNELS, name
    projection = model.cells[0].nodes[len(nodes)]
    assert projection.input_ids == [0] and len(model.cells[1].nodes) == len(nodes)
    assert projection.edges[0].conv.in_channels == 128  # C3


def test_the_classes_refuse_bad_python_arguments():
    """The constructors check what check_config checks, naming their arguments: they can be
    called without a config."""
    features = {"bottom_up": StridedBackbone({3: 8, 4: 8, 5: 8}), "in_features": ["c3", "c4", "c5"]}
    with pytest.raises(TypeError, match="^separable_conv='no' must be True or False"):
        BiFPN(**features, separable_conv="no")
    with pytest.raises(ValueError, match="^nodes is only read with topology='custom'"):
        BiFPN(**features, nodes=[(4, (1, 2))])
    blocks = [(4, "global_attention", (1, 2, 3), True)]
    with pytest.raises(ValueError, match=r"^blocks\[0\]=.* 'global_attention' merges exactly 2"):
        NASFPN(**features, cell="custom", blocks=blocks)
