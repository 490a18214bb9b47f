"""Cells and recipes: which config file each (detector, neck) trains, and the resolved config of
one run.

A *cell* is one config file, named by the detector and neck it builds; a *recipe* is what every
cell shares on top of its file: the config overrides and the datasets given by path. Cells come
from a file-name template with ``{detector}`` and ``{neck}`` placeholders (``{neck}`` is the
registry's config suffix, e.g. ``configs/COCO/{detector}_R50_{neck}_1x.yaml``) or from a list of
files whose detector and neck are read from the config itself.
"""

import hashlib
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.config import CfgNode

from ..config import load_config
from ..data import register_coco_instances_from_path
from ..engine import SPLITS, apply_dataset_names
from ..registry import NECK_REGISTRY

__all__ = [
    "DEFAULT_TEMPLATE",
    "DETECTORS",
    "NECKS",
    "PAPER_NECKS",
    "Cell",
    "Recipe",
    "cells_from_configs",
    "cells_from_template",
    "config_hash",
    "detector_of",
    "neck_of",
]

DETECTORS = {"faster_rcnn": "Faster R-CNN", "retinanet": "RetinaNet", "mask_rcnn": "Mask R-CNN"}
# Short names used on the command line -> (label, config file suffix), from the neck registry.
NECKS = {row.key: (row.label, row.config_suffix) for row in NECK_REGISTRY}
# The necks of the papers (the default rows); the others are FPN-paper baselines.
PAPER_NECKS = tuple(row.key for row in NECK_REGISTRY if row.paper)
# The built-in recipe: ResNet-18 from scratch on the synthetic data.
DEFAULT_TEMPLATE = "configs/Synthetic/{detector}_R18_{neck}.yaml"
# Keys that differ between the runs of one cell without changing its recipe.
_RUN_KEYS = ("OUTPUT_DIR", "SEED")

# (name, json, image root) of each dataset given by path, per split ("train"/"test").
Datasets = Dict[str, Tuple[Tuple[str, str, str], ...]]


@dataclass(frozen=True)
class Cell:
    """One row of a comparison: a config file that builds ``detector`` with ``neck``."""

    detector: str
    neck: str
    config_file: str

    @property
    def name(self) -> str:
        return f"{self.detector}_{self.neck}"

    @property
    def label(self) -> str:
        return NECKS[self.neck][0]


@dataclass(frozen=True)
class Recipe:
    """What every cell of a comparison shares: config overrides ``KEY VALUE ...`` and the
    COCO-format datasets given by path ({"train"/"test": ((name, json, image root), ...)});
    ``eval_only``: the runs evaluate existing weights (MODEL.WEIGHTS per run) instead of
    training."""

    opts: Tuple[str, ...] = ()
    datasets: Datasets = field(default_factory=dict)
    eval_only: bool = False

    @staticmethod
    def make(opts: Sequence[str] = (), datasets=None, eval_only: bool = False) -> "Recipe":
        given = {
            split: tuple(tuple(entry) for entry in (datasets or {}).get(split) or ())
            for split in SPLITS
        }
        return Recipe(tuple(opts), {k: v for k, v in given.items() if v}, eval_only)

    def config(
        self, cell: Cell, output_dir: str, seed: Optional[int] = None, weights: str = ""
    ) -> CfgNode:
        """The resolved config of one run, as ``tools/train_net.py`` builds it: the cell's file,
        the datasets (registered here), the overrides, then SEED (None: the config's),
        OUTPUT_DIR and (eval only) MODEL.WEIGHTS."""
        for entries in self.datasets.values():
            for name, json_file, image_root in entries:  # a no-op once registered
                register_coco_instances_from_path(name, json_file, image_root)
        cfg = load_config(cell.config_file, freeze=False)
        names = {split: [e[0] for e in self.datasets.get(split, ())] for split in SPLITS}
        apply_dataset_names(cfg, names)
        cfg.merge_from_list(list(self.opts))
        cfg.OUTPUT_DIR = output_dir
        cfg.SEED = cfg.SEED if seed is None else seed
        if self.eval_only:
            cfg.MODEL.WEIGHTS = weights
        cfg.freeze()
        return cfg


def config_hash(cfg: CfgNode, eval_only: bool = False) -> str:
    """Hash of a run's resolved config without the keys that differ between the seeds of one
    cell (OUTPUT_DIR, SEED; MODEL.WEIGHTS too when only evaluating): runs of equal hash share a
    recipe and may be averaged."""
    cfg = cfg.clone()
    cfg.defrost()
    for key in _RUN_KEYS:
        cfg[key] = None
    if eval_only:
        cfg.MODEL.WEIGHTS = None
    return hashlib.sha256(cfg.dump().encode()).hexdigest()[:16]


def _check_names(detectors: Sequence[str], necks: Sequence[str]) -> None:
    for detector in detectors:
        if detector not in DETECTORS:
            raise ValueError(f"detector {detector!r} is not one of {list(DETECTORS)}")
    for neck in necks:
        if neck not in NECKS:
            raise ValueError(f"neck {neck!r} is not one of {list(NECKS)}")


def cells_from_template(
    template: str, detectors: Sequence[str], necks: Sequence[str]
) -> List[Cell]:
    """One cell per detector x neck, its file ``template`` with ``{detector}`` and ``{neck}``
    (the registry's config suffix: FPN, PANet, BiFPN, NASFPN, ...) filled in; a missing file is
    an error naming it."""
    _check_names(detectors, necks)
    for placeholder in ("{detector}", "{neck}"):
        if placeholder not in template and len(detectors if "det" in placeholder else necks) > 1:
            raise ValueError(
                f"--config-template {template!r} has no {placeholder} placeholder, so every "
                f"{placeholder[1:-1]} would train the same file"
            )
    cells = []
    for detector in detectors:
        for neck in necks:
            path = template.format(detector=detector, neck=NECKS[neck][1])
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"no config for {detector} x {neck}: {path} does not exist (from "
                    f"--config-template {template!r})"
                )
            cells.append(Cell(detector, neck, path))
    return cells


def detector_of(cfg: CfgNode, path: str) -> str:
    """The detector a config builds: faster_rcnn, mask_rcnn or retinanet."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "RetinaNet":
        return "retinanet"
    if arch == "GeneralizedRCNN":
        return "mask_rcnn" if cfg.MODEL.MASK_ON else "faster_rcnn"
    raise ValueError(
        f"{path}: MODEL.META_ARCHITECTURE {arch!r} is none of the compared detectors "
        "(GeneralizedRCNN, RetinaNet)"
    )


def neck_of(cfg: CfgNode, path: str) -> str:
    """The registry key of the neck a config builds, from MODEL.BACKBONE.NAME; where rows share
    a builder (the C4 and C5 baselines), the file name's ``_<suffix>`` decides."""
    rows = [row for row in NECK_REGISTRY if row.builder == cfg.MODEL.BACKBONE.NAME]
    if not rows:
        builders = sorted({row.builder for row in NECK_REGISTRY})
        raise ValueError(
            f"{path}: MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME!r} is not a neck of the "
            f"registry ({builders})"
        )
    if len(rows) == 1:
        return rows[0].key
    stem = os.path.splitext(os.path.basename(path))[0]
    named = [row for row in rows if f"_{row.config_suffix}" in f"_{stem}_"]
    if len(named) != 1:
        raise ValueError(
            f"{path}: {cfg.MODEL.BACKBONE.NAME} builds {[r.key for r in rows]}; name the file "
            f"with one of {[r.config_suffix for r in rows]} or use --config-template"
        )
    return named[0].key


def cells_from_configs(paths: Sequence[str]) -> List[Cell]:
    """One cell per config file, its detector and neck read from the config; two files of the
    same detector and neck are refused (they would be one row)."""
    cells: Dict[Tuple[str, str], Cell] = {}
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--configs: {path} does not exist")
        cfg = load_config(path, freeze=False)
        cell = Cell(detector_of(cfg, path), neck_of(cfg, path), path)
        other = cells.setdefault((cell.detector, cell.neck), cell)
        if other is not cell:
            raise ValueError(
                f"--configs: {other.config_file} and {path} both build {cell.detector} with "
                f"{cell.neck}: compare them in two comparisons (another --out)"
            )
    return list(cells.values())
