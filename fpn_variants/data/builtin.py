"""Registration of the built-in synthetic datasets ``synthetic_multiscale_{train,val}`` and
their variant ``synthetic_multiscale_random_hue_{train,val}``.

The names are registered on ``import fpn_variants``; the data is generated on the first
``DatasetCatalog.get`` under ``$FPN_VARIANTS_DATASETS`` (default ``./datasets``, resolved at that
moment), in a folder named like the dataset (``synthetic_multiscale``, ...).
"""

import os
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from . import synthetic
from .synthetic import CLASS_NAMES, DATASET_DIRNAME, SyntheticSpec, generate_synthetic_dataset

__all__ = [
    "SYNTHETIC_DATASETS",
    "SYNTHETIC_VARIANTS",
    "datasets_root",
    "register_synthetic_datasets",
    "variant_splits",
]

# Built-in dataset folder -> how its splits differ from DEFAULT_SPLITS. In the random-hue
# variant every object gets a random hue, so only its shape tells its class (in the default data
# the colour alone does): the data of the reference comparison's experiment on the top-down path.
SYNTHETIC_VARIANTS: Dict[str, Dict[str, object]] = {
    DATASET_DIRNAME: {},
    f"{DATASET_DIRNAME}_random_hue": {"class_hue_jitter": None},
}
# Registered name -> (folder of SYNTHETIC_VARIANTS, split of DEFAULT_SPLITS).
SYNTHETIC_DATASETS: Dict[str, Tuple[str, str]] = {
    f"{folder}_{split}": (folder, split)
    for folder in SYNTHETIC_VARIANTS
    for split in synthetic.DEFAULT_SPLITS
}


def datasets_root() -> str:
    """Root folder of datasets: ``$FPN_VARIANTS_DATASETS`` or ``./datasets`` (absolute path)."""
    return os.path.abspath(os.path.expanduser(os.environ.get("FPN_VARIANTS_DATASETS", "datasets")))


def _static_metadata() -> Dict:
    return {"thing_classes": list(CLASS_NAMES), "evaluator_type": "coco"}


def variant_splits(folder: str) -> Optional[Dict[str, SyntheticSpec]]:
    """The splits of the built-in dataset ``folder`` (None: DEFAULT_SPLITS, read when called)."""
    changes = SYNTHETIC_VARIANTS[folder]
    if not changes:
        return None
    return {split: replace(spec, **changes) for split, spec in synthetic.DEFAULT_SPLITS.items()}


def _load(name: str, folder: str, split: str) -> List[Dict]:
    paths = generate_synthetic_dataset(
        os.path.join(datasets_root(), folder), variant_splits(folder)
    )
    json_file, image_root = paths[split]
    meta = MetadataCatalog.get(name)
    if meta.get("json_file", json_file) != json_file:
        # $FPN_VARIANTS_DATASETS changed since the last load (e.g. between tests): metadata
        # values cannot be overwritten, so start from fresh metadata.
        MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(**_static_metadata())
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root)
    return load_coco_json(json_file, image_root, name)


def register_synthetic_datasets() -> None:
    """Register the built-in names (idempotent). Nothing is generated until first use."""
    registered = set(DatasetCatalog.list())
    for name, (folder, split) in SYNTHETIC_DATASETS.items():
        if name in registered:
            continue
        DatasetCatalog.register(name, lambda n=name, f=folder, s=split: _load(n, f, s))
        MetadataCatalog.get(name).set(**_static_metadata())
