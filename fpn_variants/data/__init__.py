"""Datasets: the built-in synthetic multi-scale shapes, and COCO-format datasets by path.

Importing this package registers ``synthetic_multiscale_train`` and ``synthetic_multiscale_val``,
and the same with a random hue per object, ``synthetic_multiscale_random_hue_{train,val}``.
"""

from .builtin import (
    SYNTHETIC_DATASETS,
    SYNTHETIC_VARIANTS,
    datasets_root,
    register_synthetic_datasets,
    variant_splits,
)
from .coco import register_coco_instances_from_path, validate_coco_json
from .synthetic import (
    CLASS_NAMES,
    DEFAULT_SPLITS,
    GENERATOR_VERSION,
    SyntheticSpec,
    generate_synthetic_dataset,
    size_mix,
)

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_SPLITS",
    "GENERATOR_VERSION",
    "SYNTHETIC_DATASETS",
    "SYNTHETIC_VARIANTS",
    "SyntheticSpec",
    "datasets_root",
    "generate_synthetic_dataset",
    "register_coco_instances_from_path",
    "register_synthetic_datasets",
    "size_mix",
    "validate_coco_json",
    "variant_splits",
]

register_synthetic_datasets()
