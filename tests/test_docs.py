"""What the README and docs say about the repository is true of it: config counts, what a leaf
config changes, the levels of the reference comparison's necks, the model zoo on a fresh clone,
the files the commands name, and the commit and command every generated table names."""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess

import pytest
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_backbone

from fpn_variants import add_fpn_variants_config
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.provenance import command_line, provenance_line
from fpn_variants.registry import NECK_REGISTRY

from . import test_export
from .test_reference import write_record
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


@pytest.mark.parametrize("page", ["reference_comparison.md", "one_epoch_comparison.md"])
def test_the_comparison_pages_state_the_levels_their_necks_run_on(page):
    text = _read("docs", page)
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


def test_readme_links_the_reference_its_records_and_the_one_epoch_page():
    readme = _read("README.md")
    for path in [
        "docs/reference_comparison.md",
        "docs/reference/summary.md",
        "docs/reference/runs.csv",
        "docs/one_epoch_comparison.md",
    ]:
        assert f"]({path})" in readme, path
        assert os.path.isfile(os.path.join(ROOT, path)), path


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
    converged = "is not a converged schedule" not in _words(
        _read("docs", "reference_comparison.md")
    )
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


# Every generated table names the commit and the command that made it (issue 23): the first
# line of each generated section of README.md and docs/*.md, and of each generated page (the
# pages of docs/'s subfolders, MODEL_ZOO.md, docs/gpu_check.md), after its title.
GENERATED_PAGES = ["MODEL_ZOO.md", "docs/gpu_check.md", "docs/*/*.md"]
SECTION = re.compile(r"<!-- ([\w-]+):begin -->\n(.*?)<!-- \1:end -->", re.S)
COMMIT = re.compile(r"`([0-9a-f]{7,40})(?:-dirty)?`")


def _generated_tables() -> dict:
    """{where: first line} of every generated section and page."""
    found = {}
    for doc in ["README.md", *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]:
        for name, body in SECTION.findall(_read(doc)):
            found[f"{os.path.relpath(doc, ROOT)} <!-- {name} -->"] = body.split("\n", 1)[0]
    for pattern in GENERATED_PAGES:
        for page in sorted(glob.glob(os.path.join(ROOT, pattern))):
            lines = [line for line in _read(page).splitlines() if line and line[0] != "#"]
            found[os.path.relpath(page, ROOT)] = lines[0]
    return found


def _missing_commits(commits) -> list:
    """Those of ``commits`` that are not commits of this repository."""
    checks = "".join(f"{c}^{{commit}}\n" for c in commits)
    out = subprocess.run(
        ["git", "cat-file", "--batch-check"], cwd=ROOT, input=checks, text=True,
        capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    return [c for c, line in zip(commits, out.splitlines()) if line.endswith("missing")]


def test_every_generated_table_names_its_commit_and_command():
    tables = _generated_tables()
    assert {
        "README.md <!-- bench -->",
        "MODEL_ZOO.md",
        "docs/reference/summary.md",
        "docs/reference_comparison.md <!-- reference-summary -->",
    } <= set(tables)
    for where, line in tables.items():
        assert line.startswith("Generated ") and "commit" in line, f"{where}: {line!r}"
        assert re.search(r"\bby `[^`]+`", line), f"{where} names no command: {line!r}"
        unnamed = ("commit not recorded", "the commit that holds it")
        assert COMMIT.search(line) or any(u in line for u in unnamed), f"{where}: {line!r}"
    commits = sorted({c for line in tables.values() for c in COMMIT.findall(line)})
    assert commits, "no generated table names a commit"
    if not os.path.exists(os.path.join(ROOT, ".git")):
        pytest.skip("not a git checkout: the named commits cannot be checked")
    assert _missing_commits(commits) == [], "a table names a commit this repository lacks"


def test_provenance_lines_name_commits_and_commands_or_say_what_is_missing():
    bench = "python benchmarks/bench_necks.py --out 'a b'"
    assert command_line("benchmarks/bench_necks.py", ["--out", "a b"]) == bench
    assert provenance_line([bench], ["abc1234"]) == f"Generated at commit `abc1234` by `{bench}`."
    assert provenance_line(["make x", "python t.py"], ["c1", "c1", "c2"], written_at="c3") == (
        "Generated from runs at commits `c1` (2 runs), `c2` (1 run) by `make x`, then "
        "`python t.py` (page written at commit `c3`)."
    )
    assert provenance_line(["t"], ["c" * 40, "c" * 12], written_at="c" * 12) == (
        f"Generated from runs at commit `{'c' * 12}` (2 runs) by `t`."
    )
    assert provenance_line(["t"], ["c1-dirty", ""]) == (
        "Generated from runs at commit `c1-dirty` and 1 run whose commit was not recorded by `t`."
    )
    assert provenance_line(["t"], [None], why="old", rerun="make b") == (
        "Generated by `t`; commit not recorded (old): rerun `make b` to record it."
    )
    with pytest.raises(ValueError, match="command"):
        provenance_line([], ["c1"])


def test_benchmark_results_record_their_commit_and_command():
    necks = load_tool("bench_necks", "benchmarks")
    argv = ["--train", "--out", "output/x"]
    results = necks.new_results(necks.argument_parser().parse_args(argv), argv)
    assert results["commit"] == git_commit()
    assert results["command"] == "python benchmarks/bench_necks.py --train --out output/x"
    train = load_tool("bench_train", "benchmarks")
    settings = dict(threads=2, windows=6, window=4, warmup=3, profile_steps=2, opts=[])
    results = train.new_results(argparse.Namespace(**settings), ["--windows", "6"], 150.0)
    assert results["command"] == "python benchmarks/bench_train.py --windows 6"
    assert results["commit"] == git_commit() and results["roofline_gmacs_per_s"] == 150.0
    # README's sections say what the results recorded, or that they recorded nothing
    readme = load_tool("update_readme")
    assert readme.results_line({"commit": "abc1234", "command": "python b.py"}) == (
        "Generated at commit `abc1234` by `python b.py`, then `python tools/update_readme.py`."
    )
    assert readme.results_line({"threads": 2}) == (
        "Generated by `python tools/update_readme.py`; commit not recorded (made before results "
        "recorded their commit and command): rerun `make benchmark` to record it."
    )


def test_the_compare_section_names_the_commit_its_run_records_hold(tmp_path):
    for seed in (1, 2):
        write_record(tmp_path, "faster_rcnn", "fpn", seed, 100, {"AP": 50.0})
    folder = tmp_path / "S100"  # the ledger write_record wrote
    (folder / "table.md").write_text("| the table |\n")
    readme = load_tool("update_readme")
    section = readme.compare_section(str(folder), str(tmp_path / "images"), "bash r.sh")
    assert section.splitlines()[0] == (
        f"Generated from runs at commit `{'a' * 12}` (2 runs) by `bash r.sh`, then "
        "`python tools/update_readme.py`."
    )
    assert section.splitlines()[2] == "| the table |"


def test_the_reference_blocks_are_the_ones_its_committed_records_make(tmp_path):
    """The tables of README and the page's block are what `python tools/reference.py --report`
    makes from the committed records (but for the commit the page was written at), so neither
    goes stale unseen; the reports are made from a copy, nothing in the repository is written."""
    reference = load_tool("reference")
    copy = tmp_path / "reference"
    run_folders = shutil.ignore_patterns("seed[0-9]", "seed[0-9][0-9]")  # weights, where trained
    shutil.copytree(os.path.join(ROOT, "docs", "reference"), copy, ignore=run_folders)
    report = reference.make_report(str(copy), reference.REFERENCE_SCHEDULE)
    expected = {
        ("README.md", "reference-table"): reference.readme_sections(report, "docs/reference"),
        ("docs/reference_comparison.md", "reference-summary"): reference.report_sections(
            report, "reference"
        ),
    }
    for (path, name), lines in expected.items():
        blocks = dict(SECTION.findall(_read(path)))
        assert name in blocks, f"{path} has no {name} block"
        written, made = blocks[name].rstrip("\n"), "\n".join(lines).rstrip("\n")
        page_commit = re.compile(r" \(page written at commit `[0-9a-f]+(-dirty)?`\)")
        assert page_commit.sub("", written) == page_commit.sub(
            "", made
        ), f"{path}: run python tools/reference.py --report"
