"""Registration of the built-in synthetic datasets ``synthetic_multiscale_{train,val}``.

The names are registered on ``import fpn_variants``; the data is generated on the first
``DatasetCatalog.get`` under ``$FPN_VARIANTS_DATASETS`` (default ``./datasets``, resolved at that
moment), in the folder ``synthetic_multiscale``.
"""

import os
from typing import Dict, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .synthetic import CLASS_NAMES, DATASET_DIRNAME, DEFAULT_SPLITS, generate_synthetic_dataset

__all__ = ["SYNTHETIC_DATASETS", "datasets_root", "register_synthetic_datasets"]

# Registered name -> split of DEFAULT_SPLITS.
SYNTHETIC_DATASETS: Dict[str, str] = {
    "synthetic_multiscale_train": "train",
    "synthetic_multiscale_val": "val",
}


def datasets_root() -> str:
    """Root folder of datasets: ``$FPN_VARIANTS_DATASETS`` or ``./datasets`` (absolute path)."""
    return os.path.abspath(os.path.expanduser(os.environ.get("FPN_VARIANTS_DATASETS", "datasets")))


def _static_metadata() -> Dict:
    return {"thing_classes": list(CLASS_NAMES), "evaluator_type": "coco"}


def _load(name: str, split: str) -> List[Dict]:
    paths = generate_synthetic_dataset(os.path.join(datasets_root(), DATASET_DIRNAME))
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
    for name, split in SYNTHETIC_DATASETS.items():
        if split not in DEFAULT_SPLITS:
            raise KeyError(f"Split '{split}' of '{name}' is not in DEFAULT_SPLITS")
        if name in registered:
            continue
        DatasetCatalog.register(name, lambda name=name, split=split: _load(name, split))
        MetadataCatalog.get(name).set(**_static_metadata())
