"""What the README and docs say about the repository is true of it: config counts, what a leaf
config changes, the levels of the reference comparison's necks, the model zoo on a fresh clone,
the files the commands name."""

import glob
import json
import os
import re

import pytest
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_backbone

from fpn_variants import add_fpn_variants_config
from fpn_variants.registry import NECK_REGISTRY

from . import test_export
from .utils import ROOT, builtin_data_in, load_tool

CONFIGS = os.path.join(ROOT, "configs")


def _read(*path: str) -> str:
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def _words(text: str) -> str:
    """``text`` with its line breaks and runs of spaces as single spaces (prose is rewrapped)."""
    return " ".join(text.split())


def test_readme_config_counts_are_the_generated_ones():
    block = re.search(
        r"<!-- configs:begin -->\n(.*?)<!-- configs:end -->", _read("README.md"), re.S
    )
    assert block, "README.md has no configs block"
    expected = load_tool("update_readme").configs_section(CONFIGS)
    assert block.group(1).strip() == expected.strip(), "run python tools/update_readme.py"
    # the LazyConfig twins are as many as the YAML leaves
    yaml = [
        p for p in glob.glob(f"{CONFIGS}/*/*.yaml") if not os.path.basename(p).startswith("Base")
    ]
    assert f"| {len(yaml)} |" in expected


def _flat(cfg: CfgNode, prefix: str = "") -> dict:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, CfgNode):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _load(path: str) -> dict:
    cfg = add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(path, allow_unsafe=False)
    return _flat(cfg)


# What the single-level baselines set: the one level the heads use, its anchors and proposals
SINGLE_LEVEL_KEYS = {
    "MODEL.FPN.NUM_EXTRA_LEVELS",
    "MODEL.ANCHOR_GENERATOR.SIZES",
    "MODEL.RPN.IN_FEATURES",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.ROI_HEADS.IN_FEATURES",
}
# ... and C4 / C5 the one bottom-up feature they read
SINGLE_FEATURE_KEYS = {"MODEL.RESNETS.OUT_FEATURES", "MODEL.FPN.IN_FEATURES"}


def _leaf_differences():
    """(recipe, path, row, detector, keys that differ from the detector's FPN leaf, the FPN
    leaf's values) per leaf."""
    suffix = {row.config_suffix: row for row in NECK_REGISTRY}
    for recipe in ("Synthetic", "COCO"):
        for path in sorted(glob.glob(os.path.join(CONFIGS, recipe, "*.yaml"))):
            match = re.match(r"(\w+?)_R\d+_([A-Za-z0-9]+)", os.path.basename(path))
            if not match or match.group(2) == "FPN":
                continue
            detector, row = match.group(1), suffix[match.group(2)]
            fpn = path.replace(f"_{row.config_suffix}", "_FPN")
            leaf, base = _load(path), _load(fpn)
            keys = {k for k in leaf if leaf[k] != base[k] and k != "OUTPUT_DIR"}
            yield recipe, path, row, detector, keys, base


def _declared_keys(row, recipe: str, base: dict) -> set:
    """The keys of ``row``'s config_changes in ``recipe`` whose value is not the FPN leaf's."""
    keys = {option.arg: option.config_key for option in row.neck_class.options}
    return {
        keys[change.arg]
        for change in row.config_changes
        if recipe in change.recipes and base[keys[change.arg]] != change.value
    }


def test_leaf_configs_differ_from_fpn_as_the_readme_says():
    """README, "Configs": the neck's builder and the changes its registry row declares (BiFPN and
    NAS-FPN: their norm, and with RetinaNet how they make P6-P7); the single-level baselines their
    level, anchors and proposals."""
    for recipe, path, row, detector, keys, base in _leaf_differences():
        expected = {"MODEL.BACKBONE.NAME"} | _declared_keys(row, recipe, base)
        if row.key in ("bifpn", "nasfpn"):
            retinanet = detector == "retinanet"
            assert f"MODEL.{row.variant_node}.NORM" in expected, path
            assert ("MODEL.FPN.EXTRA_LEVEL_TYPE" in expected) == retinanet, path
        if row.key in ("c4", "c5", "fpn_p2"):
            expected |= SINGLE_LEVEL_KEYS
        if row.key in ("c4", "c5"):
            expected |= SINGLE_FEATURE_KEYS
        assert keys == expected, path


def test_paper_neck_leaf_comments_list_the_keys_that_differ():
    for _, path, row, _, keys, _ in _leaf_differences():
        if not row.paper:
            continue
        header = " ".join(line.lstrip("# ") for line in _read(path).splitlines() if line[:1] == "#")
        listed = re.search(r"Keys that differ from the FPN config: (.*?)\.(\s|$)", header)
        assert listed, f"{path}: its first comment does not list the keys that differ"
        assert set(listed.group(1).split(", ")) == keys, path


def test_adding_a_neck_lists_the_files_it_touches():
    """README, "Adding a neck": as many files as it says, each there (but the new neck's), and
    as many generated configs per neck as tools/write_configs.py writes."""
    section = re.search(r"\*\*Adding a neck\*\*(.*?)\n- \*\*FPN\*\*", _read("README.md"), re.S)
    text = _words(section.group(1))
    files = re.findall(r"^\d+\. `([^`]+)`", section.group(1), re.M)
    assert f"editing {len(files)} files" in text
    missing = [p for p in files if "<" not in p and not os.path.isfile(os.path.join(ROOT, p))]
    assert missing == [], "README names files that are not there"
    generated = load_tool("write_configs").generated_configs()
    necks = sum(row.paper and row.key != "fpn" for row in NECK_REGISTRY)
    assert f"writes its {len(generated) // necks} configs" in text


def test_reference_comparison_states_the_levels_its_necks_run_on():
    text = _read("docs", "reference_comparison.md")
    necks = re.search(r"- \*\*Necks\*\*(.*?)\n- ", text, re.S).group(1)
    assert "P2-P6, from C2-C5, P6 by max-pooling" in _words(necks)
    for row in NECK_REGISTRY:
        if not row.paper:
            continue
        path = os.path.join(CONFIGS, "Synthetic", f"faster_rcnn_R18_{row.config_suffix}.yaml")
        cfg = add_fpn_variants_config(get_cfg())
        cfg.merge_from_file(path, allow_unsafe=False)
        cfg.MODEL.FPN.OUT_CHANNELS = 64  # small (GN needs 64) and quick: levels do not depend on it
        if row.key in ("bifpn", "nasfpn"):
            cfg.MODEL[row.variant_node].NUM_REPEATS = 1
        shapes = build_backbone(cfg).output_shape()
        assert {name: s.stride for name, s in shapes.items()} == {
            f"p{level}": 2**level for level in range(2, 7)
        }, path
        assert cfg.MODEL.FPN.IN_FEATURES == ["res2", "res3", "res4", "res5"]
        assert cfg.MODEL.FPN.EXTRA_LEVEL_TYPE == "maxpool"


def test_readme_says_whether_the_model_zoo_weights_can_be_downloaded():
    manifest = json.loads(_read("model_zoo", "manifest.json"))
    urls = [entry["weights"].get("url") for entry in manifest["models"].values()]
    claim = "no manifest entry has a download URL yet"
    assert (claim in _words(_read("README.md"))) == (not any(urls))


@pytest.mark.parametrize("doc", ["docs/export.md", "tools/export_model.py"])
def test_the_sample_image_named_in_the_docs_is_generated(doc, tmp_path):
    named = set(re.findall(r"datasets/(synthetic_multiscale/\w+/\d+\.jpg)", _read(doc)))
    assert named
    with builtin_data_in(tmp_path, 1, 1):
        DatasetCatalog.get("synthetic_multiscale_val")
    for path in named:
        assert os.path.isfile(tmp_path / path), path


def test_makefile_calls_the_reference_converged_only_if_it_is():
    converged = "does not meet it" not in _words(_read("docs", "reference_comparison.md"))
    makefile = _words(_read("Makefile").replace("#", ""))
    assert ("converged comparison" in makefile) == converged
    assert ("not converged" in makefile) == (not converged)


@pytest.mark.skipif(test_export.FULL, reason="the default selection of scripted detectors")
def test_export_doc_names_the_detectors_scripted_by_default():
    labels = {row.builder: row.label for row in NECK_REGISTRY}
    detectors = {"faster_rcnn": "Faster R-CNN", "retinanet": "RetinaNet", "mask_rcnn": "Mask R-CNN"}
    pairs = [f"{detectors[d]} × {labels[n]}" for d, n in test_export.SCRIPTING_PAIRS]
    footnote = re.search(
        r"¹ Checked by default for (.*?); the other (\d+) with", _words(_read("docs", "export.md"))
    )
    assert footnote, "docs/export.md has no footnote on the scripted detectors"
    assert footnote.group(1).replace(" and ", ", ").split(", ") == pairs
    assert int(footnote.group(2)) == len(test_export.ALL_PAIRS) - len(pairs)
