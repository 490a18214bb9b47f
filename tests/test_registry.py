"""The neck registry is the one list of necks: every row is registered and has its configs, and
the builders, config nodes, comparison, model zoo and configs all read the same names. The
package's imports point one way (layers -> necks -> registry/config/builders -> the rest)."""

import ast
import glob
import os

from detectron2.config import get_cfg
from detectron2.modeling import BACKBONE_REGISTRY

import fpn_variants
from fpn_variants import backbone, comparison, config
from fpn_variants.model_zoo import manifest
from fpn_variants.registry import ALL_BUILDERS, NECK_BUILDERS, NECK_REGISTRY, VARIANT_NODES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
PACKAGE = os.path.join(ROOT, "fpn_variants")


def test_every_row_is_a_registered_builder_of_its_class():
    for row in NECK_REGISTRY:
        assert row.builder in BACKBONE_REGISTRY, row.builder
        builder = BACKBONE_REGISTRY.get(row.builder)
        assert builder.neck_class is row.neck_class, row.builder
        assert getattr(backbone, row.builder) is builder
        assert builder.__name__ == row.builder and builder.__doc__, row.builder
    # Every builder the module defines is a row's (the table lists them all).
    defined = {
        name
        for name, value in vars(backbone).items()
        if name.startswith("build_") and getattr(value, "neck_class", None) is not None
    }
    assert defined == set(ALL_BUILDERS)
    assert len({row.key for row in NECK_REGISTRY}) == len(NECK_REGISTRY)
    assert len({row.config_suffix for row in NECK_REGISTRY}) == len(NECK_REGISTRY)
    assert len({row.label for row in NECK_REGISTRY}) == len(NECK_REGISTRY)


def test_every_row_has_the_configs_of_its_kind():
    """Each recipe and detector with a config for some neck of a kind (paper neck or baseline)
    has one for every neck of that kind, in YAML and LazyConfig, naming the row's builder (the
    papers' necks but FPN: written by tools/write_configs.py, tests/test_configs.py)."""
    for recipe, suffix in (("Synthetic", ""), ("COCO", "_1x")):
        for detector in comparison.DETECTORS:
            for paper in (True, False):
                rows = [row for row in NECK_REGISTRY if row.paper == paper]
                paths = {
                    row: os.path.join(
                        CONFIGS,
                        recipe,
                        f"{detector}_R{18 if recipe == 'Synthetic' else 50}_"
                        f"{row.config_suffix}{suffix}.yaml",
                    )
                    for row in rows
                }
                present = [row.key for row, path in paths.items() if os.path.exists(path)]
                if not present:
                    continue
                assert present == [row.key for row in rows], (
                    f"{recipe} {detector}: configs of {present} only (a neck of the papers: run "
                    "python tools/write_configs.py)"
                )
                for row, path in paths.items():
                    twin = path.replace(CONFIGS, os.path.join(CONFIGS, "LazyConfig"))
                    assert os.path.exists(twin[: -len(".yaml")] + ".py"), twin
                    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
                    cfg.merge_from_file(path)
                    assert cfg.MODEL.BACKBONE.NAME == row.builder, path
    # The comparison's default rows exist for every detector.
    for detector in comparison.DETECTORS:
        for key in comparison.PAPER_NECKS:
            suffix = comparison.NECKS[key][1]
            path = os.path.join(CONFIGS, "Synthetic", f"{detector}_R18_{suffix}.yaml")
            assert os.path.exists(path), path


def test_comparison_zoo_builders_and_config_read_the_registry():
    assert comparison.NECKS == {row.key: (row.label, row.config_suffix) for row in NECK_REGISTRY}
    assert comparison.PAPER_NECKS == tuple(row.key for row in NECK_REGISTRY if row.paper)
    assert backbone.ALL_BUILDERS == ALL_BUILDERS and backbone.NECK_BUILDERS == NECK_BUILDERS
    assert list(NECK_BUILDERS) == [r.builder for r in NECK_REGISTRY if r.paper]
    labels = [row.label for row in NECK_REGISTRY if row.paper]
    assert [manifest.NECK_NAMES[b] for b in NECK_BUILDERS] == labels
    assert manifest.NECK_ORDER == ("FPN (Detectron2)", *labels)
    # Detectron2's own FPN builders are the zoo's stock model, not ours.
    stock = set(manifest.NECK_NAMES) - set(NECK_BUILDERS)
    assert stock and all(b in BACKBONE_REGISTRY and b not in ALL_BUILDERS for b in stock)
    # The nodes add_fpn_variants_config creates are exactly the registry's variant nodes.
    ours = fpn_variants.add_fpn_variants_config(get_cfg()).MODEL
    new_nodes = {k for k in ours if k not in get_cfg().MODEL and isinstance(ours[k], dict)}
    assert new_nodes == set(VARIANT_NODES) == set(config.VARIANT_NODES)
    for node, builder in VARIANT_NODES.items():
        assert [r.builder for r in NECK_REGISTRY if r.variant_node == node] == [builder]


def _function_level_relative_imports(path: str):
    tree = ast.parse(open(path).read(), path)
    found = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                inner = isinstance(node, ast.ImportFrom) and node.level > 0
                ours = isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                    (getattr(node, "module", None) or a.name).startswith("fpn_variants.")
                    for a in node.names
                )
                if inner or ours:
                    found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    return found


def test_no_package_import_is_hidden_in_a_function():
    """Imports of the package's own modules sit at module level: one placed in a function is how
    an import cycle is hidden, and there is none to hide."""
    paths = glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)
    assert [hit for p in sorted(paths) for hit in _function_level_relative_imports(p)] == []


def _package_imports(path: str):
    """(line, absolute module) of each relative import of the module at ``path``."""
    package = os.path.relpath(os.path.dirname(path), ROOT).split(os.sep)
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - node.level + 1]
            yield node.lineno, ".".join(base + ([node.module] if node.module else []))


def test_imports_point_one_way():
    """layers import nothing of the necks or above; necks nothing above them (config, builders,
    registry, engine...): they read a config only in from_config, by its keys."""
    allowed = {
        "layers": ("fpn_variants.layers",),
        "necks": ("fpn_variants.layers", "fpn_variants.necks"),
    }
    for part, prefixes in allowed.items():
        for path in glob.glob(os.path.join(PACKAGE, part, "*.py")):
            for line, module in _package_imports(path):
                assert module.startswith(prefixes), f"{path}:{line} imports {module}"
    # The registry and config sit on the necks, the builders on both.
    for name, forbidden in (("registry", ("backbone", "config")), ("config", ("backbone",))):
        path = os.path.join(PACKAGE, f"{name}.py")
        modules = [m for _, m in _package_imports(path)]
        assert not [m for m in modules if m.split(".")[1] in forbidden], (name, modules)
