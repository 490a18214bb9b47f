"""Register any COCO-format instance dataset on disk by path, after checking its annotation file.

Detectron2's ``register_coco_instances`` trusts the file: a malformed one fails later, deep inside
data loading or evaluation, with a bare ``KeyError`` or ``AssertionError``.
:func:`register_coco_instances_from_path` first runs :func:`validate_coco_json`, whose errors name
the file and the problem.
"""

import json
import logging
import math
import os
from collections import Counter
from typing import Dict, List, Optional, Set

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

__all__ = ["validate_coco_json", "register_coco_instances_from_path"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # offending entries quoted in an error message


def _listed(offenders: List[str]) -> str:
    more = f" (and {len(offenders) - _MAX_LISTED} more)" if len(offenders) > _MAX_LISTED else ""
    return "; ".join(offenders[:_MAX_LISTED]) + more


def _fail(json_file: str, problem: str, offenders: List[str]) -> None:
    raise ValueError(f"Invalid COCO annotation file {json_file}: {problem}: {_listed(offenders)}.")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _check_segmentations(json_file: str, annotations: List[Dict]) -> None:
    """Raise on malformed "segmentation" values; log the instances Detectron2 will drop."""
    bad, dropped = [], []
    for a in annotations:
        segm = a.get("segmentation")
        if not segm:
            continue
        if isinstance(segm, dict):
            size = segm.get("size")
            ok = isinstance(segm.get("counts"), (str, list)) and (
                isinstance(size, list) and len(size) == 2 and all(_is_positive_int(v) for v in size)
            )
        else:
            ok = isinstance(segm, list) and all(
                isinstance(p, list) and all(_is_number(v) for v in p) for p in segm
            )
            if ok and not any(len(p) % 2 == 0 and len(p) >= 6 for p in segm):
                dropped.append(f"annotation {a.get('id')}")
        if not ok:
            bad.append(f"annotation {a.get('id')}: segmentation {str(segm)[:60]}")
    if bad:
        _fail(
            json_file,
            "'segmentation' must be polygons (lists of numbers) or RLE {'counts', 'size'}",
            bad,
        )
    if dropped:
        logger.warning(
            f"{json_file}: {len(dropped)} annotations have no polygon of at least 3 points; "
            f"Detectron2 skips these instances: {_listed(dropped)}."
        )


def _log_boxes_outside(json_file: str, annotations: List[Dict], images: List[Dict]) -> None:
    """Log the boxes that lie entirely outside their image: Detectron2 clips boxes to the image
    and drops the instances whose box is then empty, without a message."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in images}
    outside = []
    for a in annotations:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            outside.append(
                f"annotation {a.get('id')}: bbox {a['bbox']!r} in image {a['image_id']} "
                f"({width} x {height})"
            )
    if outside:
        logger.warning(
            f"{json_file}: {len(outside)} boxes lie entirely outside their image; Detectron2 "
            f"drops these instances: {_listed(outside)}."
        )


def _read_json_object(json_file: str) -> Dict:
    """The top-level object of a COCO file, with "images", "annotations" and "categories" lists."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"COCO annotation file {json_file} does not exist.")
    if os.path.getsize(json_file) == 0:
        raise ValueError(f"Invalid COCO annotation file {json_file}: the file is empty.")
    try:
        with open(json_file) as f:
            data = json.load(f)
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"Invalid COCO annotation file {json_file}: not valid JSON ({e}).") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"Invalid COCO annotation file {json_file}: the top level must be a JSON object with "
            f"'images', 'annotations' and 'categories', got a {type(data).__name__}."
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(
                f"Invalid COCO annotation file {json_file}: key '{key}' is missing or not a list."
            )
    return data


def _check_unique(json_file: str, kind: str, ids: List) -> None:
    dup = [str(i) for i, n in Counter(ids).items() if n > 1]
    if dup:
        _fail(json_file, f"duplicate {kind} ids", dup)


def _check_categories(json_file: str, categories: List) -> Set:
    """Categories have "id" and "name", ids are unique; returns the ids."""
    bad = [repr(c) for c in categories if not isinstance(c, dict) or {"id", "name"} - set(c)]
    if bad:
        _fail(json_file, "categories without 'id' or 'name'", bad)
    _check_unique(json_file, "category", [c["id"] for c in categories])
    return {c["id"] for c in categories}


def _check_images(json_file: str, images: List) -> Set:
    """Images have "id", "file_name", positive integer "height" and "width", ids are unique and
    there is at least one; returns the ids."""
    required = {"id", "file_name", "height", "width"}
    bad = [
        f"image {img.get('id') if isinstance(img, dict) else img!r} lacks "
        f"{sorted(required - set(img)) if isinstance(img, dict) else sorted(required)}"
        for img in images
        if not isinstance(img, dict) or required - set(img)
    ]
    if bad:
        _fail(json_file, "images without the required keys", bad)
    if not images:
        raise ValueError(f"Invalid COCO annotation file {json_file}: 'images' is empty.")
    bad = [
        f"image {img['id']}: height {img['height']!r}, width {img['width']!r}"
        for img in images
        if not all(_is_positive_int(img[k]) for k in ("height", "width"))
    ]
    if bad:
        _fail(json_file, "images whose 'height' and 'width' are not positive integers", bad)
    _check_unique(json_file, "image", [img["id"] for img in images])
    return {img["id"] for img in images}


def _check_annotation_ids(
    json_file: str, annotations: List, image_ids: Set, category_ids: Set
) -> None:
    """Annotations are objects with unique ids, each naming a known image and category."""
    if any(not isinstance(a, dict) for a in annotations):
        _fail(json_file, "annotations that are not objects", ["see 'annotations'"])
    _check_unique(json_file, "annotation", [a.get("id") for a in annotations])
    bad_image = [f"annotation {a.get('id')}: image_id {a.get('image_id')!r}" for a in annotations]
    bad_image = [s for s, a in zip(bad_image, annotations) if a.get("image_id") not in image_ids]
    if bad_image:
        _fail(json_file, "annotations refer to unknown image ids", bad_image)
    bad_cat = [
        f"annotation {a.get('id')}: category_id {a.get('category_id')!r}"
        for a in annotations
        if a.get("category_id") not in category_ids
    ]
    if bad_cat:
        _fail(
            json_file,
            f"annotations refer to unknown category ids (known: {sorted(category_ids)})",
            bad_cat,
        )


def _check_boxes(json_file: str, annotations: List[Dict]) -> None:
    """Every "bbox" is 4 finite numbers with positive width and height; no "ignore" flags."""
    bad_box, empty_box = [], []
    for a in annotations:
        box = a.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
            bad_box.append(f"annotation {a.get('id')}: bbox {box!r}")
        elif box[2] <= 0 or box[3] <= 0:
            empty_box.append(f"annotation {a.get('id')}: bbox {box!r}")
    if bad_box:
        _fail(json_file, "'bbox' must be a list of 4 finite numbers [x, y, w, h]", bad_box)
    if empty_box:
        _fail(json_file, "boxes with non-positive width or height (fix or remove them)", empty_box)
    ignored = [f"annotation {a.get('id')}" for a in annotations if a.get("ignore", 0)]
    if ignored:
        _fail(
            json_file, "'ignore' flags, which Detectron2 does not support (use 'iscrowd')", ignored
        )


def _check_image_files(json_file: str, image_root: str, images: List[Dict]) -> None:
    """``image_root`` is a folder holding every image of the file."""
    if not os.path.isdir(image_root):
        raise FileNotFoundError(
            f"Image folder {image_root} (for annotation file {json_file}) does not exist."
        )
    missing = [
        f"{img['file_name']} (image id {img['id']})"
        for img in images
        if not os.path.isfile(os.path.join(image_root, img["file_name"]))
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(images)} images listed in {json_file} are not in "
            f"{image_root}: {_listed(missing)}. Is it the right image folder?"
        )


def validate_coco_json(json_file: str, image_root: Optional[str] = None) -> Dict:
    """Check that ``json_file`` is a usable COCO instances file; raise a clear error if not.

    Checks: the file exists, is not empty and is JSON; "images", "annotations" and "categories"
    are lists, with at least one image; images have "id", "file_name" and positive integer
    "height" and "width"; category and annotation ids are unique; every annotation names a known
    image and category, has a finite "bbox" [x, y, w, h] with w > 0 and h > 0, no "ignore" flag
    (Detectron2 asserts on it) and a well-formed "segmentation" if any (polygons of numbers or
    RLE). Polygons with fewer than 3 points or an odd number of coordinates are logged: Detectron2
    drops the instances that have no other polygon; so are boxes entirely outside their image
    (Detectron2 clips them to nothing and drops them). When ``image_root`` is given, it must be a
    folder holding every image (one ``stat`` per image: ~1 s for COCO train2017).

    Args:
        json_file (str): path of the annotation file.
        image_root (str or None): folder of the images named by "file_name".

    Returns:
        dict: summary {"num_images": int, "num_annotations": int, "thing_classes": list[str]}
        (class names ordered by category id, as :func:`load_coco_json` orders them).

    Raises:
        FileNotFoundError: ``json_file`` or ``image_root`` or an image is missing.
        ValueError: the content is not valid; the message names the file, the problem and up to
            5 offending entries.
    """
    data = _read_json_object(json_file)
    categories, images, annotations = data["categories"], data["images"], data["annotations"]
    category_ids = _check_categories(json_file, categories)
    image_ids = _check_images(json_file, images)
    _check_annotation_ids(json_file, annotations, image_ids, category_ids)
    _check_boxes(json_file, annotations)
    _check_segmentations(json_file, annotations)
    _log_boxes_outside(json_file, annotations, images)
    if image_root is not None:
        _check_image_files(json_file, image_root, images)

    thing_classes = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    return {
        "num_images": len(images),
        "num_annotations": len(annotations),
        "thing_classes": thing_classes,
    }


def register_coco_instances_from_path(
    name: str,
    json_file: str,
    image_root: str,
    *,
    metadata: Optional[Dict] = None,
    validate: bool = True,
) -> Dict:
    """Register a COCO-format instance dataset in DatasetCatalog / MetadataCatalog.

    The annotation file is validated now (see :func:`validate_coco_json`) and loaded lazily by
    ``DatasetCatalog.get(name)``. Metadata gets ``json_file`` and ``image_root`` (absolute),
    ``evaluator_type="coco"`` and ``thing_classes``, so ``COCOEvaluator`` works on it.
    Registering the same name with the same paths again is a no-op.

    Args:
        name (str): dataset name to use in ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
        json_file (str): COCO instances annotation file.
        image_root (str): folder of the images.
        metadata (dict or None): extra metadata.
        validate (bool): run :func:`validate_coco_json` (parses the file once more).

    Returns:
        dict: the validation summary (empty if ``validate`` is False).

    Raises:
        ValueError: ``name`` is already registered with other files, or the file is invalid.
        FileNotFoundError: a file or folder is missing.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Dataset name must be a non-empty string, got {name!r}.")
    json_file = os.path.abspath(os.path.expanduser(json_file))
    image_root = os.path.abspath(os.path.expanduser(image_root))
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return {}
        raise ValueError(
            f"Dataset name '{name}' is already registered (json_file={meta.get('json_file')}, "
            f"image_root={meta.get('image_root')}); pick another name for {json_file}."
        )
    summary = validate_coco_json(json_file, image_root) if validate else {}
    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root, name))
    extra = dict(metadata or {})
    if "thing_classes" in summary:
        extra.setdefault("thing_classes", summary["thing_classes"])
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **extra
    )
    if summary:
        logger.info(
            f"Registered dataset '{name}': {summary['num_images']} images, "
            f"{summary['num_annotations']} annotations, {len(summary['thing_classes'])} classes "
            f"from {json_file}."
        )
    return summary
