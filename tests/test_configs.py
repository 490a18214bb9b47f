"""Every YAML under configs/ merges and builds, loads without executing code, and selects the
neck it is named after; the COCO FPN configs have Detectron2's parameter counts. The configs of
the papers' necks other than FPN are the ones tools/write_configs.py writes from the registry."""

import glob
import os
from dataclasses import replace

import pytest
import yaml
from detectron2.modeling import build_model

from fpn_variants.config import config_from_yaml, load_config
from fpn_variants.registry import NECK_REGISTRY, RECIPES, ConfigChange, entry

from .utils import load_tool, neck_parameters

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.join(REPO, "configs")
LEAVES = sorted(
    p
    for p in glob.glob(os.path.join(ROOT, "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)
# Config file suffix -> builder, from the neck registry: the papers' necks, then the FPN paper's
# baselines (its Tables 1-3; configs/Synthetic, Faster R-CNN only).
NECK_OF_NAME = {row.config_suffix: row.builder for row in NECK_REGISTRY if row.paper}
BASELINE_OF_NAME = {row.config_suffix: row.builder for row in NECK_REGISTRY if not row.paper}


def neck_suffix(path: str) -> str:
    name = os.path.basename(path).replace("_1x.yaml", "").replace(".yaml", "")
    return name.split("_")[-1]


def load(path):
    return load_config(path, ["MODEL.DEVICE", "cpu"])


def test_every_detector_and_paper_neck_per_recipe_and_the_baselines():
    for recipe in ("COCO", "Synthetic"):
        leaves = [p for p in LEAVES if f"{os.sep}{recipe}{os.sep}" in p]
        necks = [os.path.basename(p) for p in leaves if neck_suffix(p) in NECK_OF_NAME]
        assert len(necks) == 3 * len(NECK_OF_NAME), (recipe, necks)
        baselines = sorted(neck_suffix(p) for p in leaves if neck_suffix(p) not in NECK_OF_NAME)
        assert baselines == ([] if recipe == "COCO" else sorted(BASELINE_OF_NAME)), baselines


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(ROOT, "**", "*.yaml"), recursive=True))
)
def test_shipped_configs_are_plain_yaml(path):
    with open(path) as f:
        yaml.safe_load(f)  # raises on python tags: nothing in them can execute code


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_merges_and_builds(path):
    cfg = load(path)
    assert cfg.MODEL.BACKBONE.NAME == {**NECK_OF_NAME, **BASELINE_OF_NAME}[neck_suffix(path)]
    model = build_model(cfg)
    shapes = model.backbone.output_shape()
    heads = cfg.MODEL.RETINANET.IN_FEATURES if "retinanet" in path else cfg.MODEL.RPN.IN_FEATURES
    assert set(heads) <= set(shapes)
    if os.path.basename(path) in ("faster_rcnn_R50_FPN_1x.yaml", "retinanet_R50_FPN_1x.yaml"):
        # Detectron2 tests/test_model_analysis.py: total and backbone counts of its R50-FPN models.
        total, backbone = (41_699_936, 26_799_296) if "faster" in path else (37_915_572, 31_452_352)
        assert sum(p.numel() for p in model.parameters()) == total
        assert sum(p.numel() for p in model.backbone.parameters()) == backbone
    if "NASFPN" in path and "COCO" in path:
        assert neck_parameters(model.backbone) == 29_858_816  # TF reference, 7 x 256


def test_a_config_with_python_tags_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("MODEL:\n  WEIGHTS: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(yaml.constructor.ConstructorError):
        load(str(path))


def test_load_config_applies_opts_freezes_and_names_what_is_wrong(tmp_path):
    path = os.path.join(ROOT, "Synthetic", "faster_rcnn_R18_FPN.yaml")
    cfg = load_config(path, ["SOLVER.MAX_ITER", "7"])
    assert cfg.SOLVER.MAX_ITER == 7 and cfg.is_frozen()
    assert not load_config(path, freeze=False).is_frozen()
    dumped = config_from_yaml(cfg.dump())
    assert (dumped.SOLVER.MAX_ITER, dumped.MODEL.BACKBONE.NAME) == (7, cfg.MODEL.BACKBONE.NAME)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("MODEL:\n  NO_SUCH_KEY: 1\n")
    with pytest.raises(ValueError, match="unknown.yaml has keys unknown to this fpn_variants"):
        load_config(unknown)
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        load_config(tmp_path / "missing.yaml")


def _text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_generated_configs_are_the_ones_the_registry_declares():
    """Each paper neck but FPN has its YAML and LazyConfig file per recipe and detector as
    tools/write_configs.py writes them, and no other file under configs/ says it is generated."""
    tool = load_tool("write_configs")
    expected = tool.generated_configs()
    necks = [row for row in NECK_REGISTRY if row.paper and row.key != "fpn"]
    assert len(expected) == 2 * len(RECIPES) * 3 * len(necks)
    for rel, text in expected.items():
        assert _text(os.path.join(REPO, rel)) == text, f"{rel}: run python tools/write_configs.py"
    files = glob.glob(os.path.join(ROOT, "**", "*.*"), recursive=True)
    marked = {os.path.relpath(p, REPO) for p in files if tool.GENERATED in _text(p)}
    assert marked == set(expected)


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ([ConfigChange("nrom", "GN", "a typo")], ValueError, "not an argument of BiFPN"),
        ([ConfigChange("norm", 32, "not a norm")], TypeError, "bifpn: norm=32 must be a string"),
        ([ConfigChange("num_repeats", 3, "the default")], ValueError, "FPN's configs already"),
        ([ConfigChange("norm", "GN", "?", ("VOC",))], ValueError, r"recipes \['VOC'\]"),
        ([ConfigChange("norm", "GN", "?")] * 2, ValueError, r"\['norm'\] twice in Synthetic"),
    ],
)
def test_a_config_change_that_is_no_option_or_changes_nothing_is_refused(changes, error, message):
    tool = load_tool("write_configs")
    row = replace(entry("bifpn"), config_changes=tuple(changes))
    with pytest.raises(error, match=message):
        tool.neck_leaves(row)


def test_a_change_is_written_only_where_fpn_config_differs():
    """BiFPN's max-pooled extra levels are FPN's in the R-CNN configs: only RetinaNet's set them."""
    tool = load_tool("write_configs")
    for leaf in tool.neck_leaves(entry("bifpn")):
        args = [change.arg for _, change in leaf.changes]
        assert args == (["extra_level_type", "norm"] if leaf.detector == "retinanet" else ["norm"])
