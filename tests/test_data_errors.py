"""Broken annotation files given on the command line (``--dataset-train``) fail at once with the
file and the problem named, or are logged and skipped, never crash later."""

import itertools
import json
import logging

import pytest
from detectron2.data import DatasetCatalog

from fpn_variants.data import register_coco_instances_from_path
from fpn_variants.data.resumable import build_resumable_train_loader
from fpn_variants.engine import argument_parser, setup

from .test_engine import CONFIG

_names = (f"broken_{i}" for i in itertools.count())


def _annotation(**overrides):
    ann = {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 4], "iscrowd": 0}
    return {**ann, **overrides}


def _dataset(tmp_path, content=None, images=("a.jpg",), **overrides):
    """A COCO file and its image folder (empty files stand for the images)."""
    for name in images:
        (tmp_path / name).write_bytes(b"")
    if content is None:
        content = {
            "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
            "annotations": [_annotation()],
            "categories": [{"id": 3, "name": "thing"}],
            **overrides,
        }
    path = tmp_path / "ann.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path), str(tmp_path)


def _setup_with(name, json_file, image_root, tmp_path):
    args = argument_parser().parse_args(
        ["--config-file", CONFIG, "--dataset-train", name, json_file, image_root]
        + ["OUTPUT_DIR", str(tmp_path / "out")]
    )
    return setup(args)


TWO_IMAGES = {
    "images": [
        {"id": 1, "file_name": "a.jpg", "height": 10, "width": 10},
        {"id": 2, "file_name": "b.jpg", "height": 10, "width": 10},
    ],
    "annotations": [_annotation()],
    "categories": [{"id": 3, "name": "thing"}],
}


@pytest.mark.parametrize(
    "content,error,problem",
    [
        ("", ValueError, "the file is empty"),
        ('{"images": [', ValueError, "not valid JSON"),
        (TWO_IMAGES, FileNotFoundError, r"1 of the 2 images .* are not in .*b.jpg \(image id 2\)"),
        (
            {**TWO_IMAGES, "annotations": [_annotation(bbox=[1, 1, -4, 4])]},
            ValueError,
            r"non-positive width or height \(fix or remove them\): annotation 1: bbox \[1, 1, -4",
        ),
        (
            {**TWO_IMAGES, "annotations": [_annotation(bbox=[1, "x", 4, 4])]},
            ValueError,
            "'bbox' must be a list of 4 finite numbers",
        ),
        (
            {**TWO_IMAGES, "annotations": [_annotation(category_id=7)]},
            ValueError,
            r"unknown category ids \(known: \[3\]\): annotation 1: category_id 7",
        ),
        (
            {**TWO_IMAGES, "annotations": [_annotation(ignore=1)]},
            ValueError,
            "'ignore' flags, which Detectron2 does not support",
        ),
        (
            {**TWO_IMAGES, "annotations": [_annotation(segmentation=[[1, 2, "x", 4, 5, 6]])]},
            ValueError,
            "'segmentation' must be polygons",
        ),
        (
            {**TWO_IMAGES, "images": [{**TWO_IMAGES["images"][0], "height": 0}]},
            ValueError,
            "'height' and 'width' are not positive integers: image 1: height 0",
        ),
    ],
    ids=[
        "empty",
        "malformed",
        "missing-image",
        "invalid-box",
        "box-of-strings",
        "unknown-category",
        "ignore-flag",
        "bad-segmentation",
        "bad-size",
    ],
)
def test_broken_files_name_the_file_and_the_problem(tmp_path, content, error, problem):
    json_file, image_root = _dataset(tmp_path, content)
    name = next(_names)
    with pytest.raises(error, match=problem) as info:
        _setup_with(name, json_file, image_root, tmp_path)
    assert json_file in str(info.value)
    assert name not in DatasetCatalog.list()


def test_instances_detectron2_drops_are_logged_with_the_file(tmp_path, caplog):
    short = _annotation(id=2, segmentation=[[1, 1, 4, 1]])  # 2 points: not a polygon
    json_file, image_root = _dataset(tmp_path, annotations=[_annotation(), short])
    logger = logging.getLogger("fpn_variants.data.coco")
    logger.addHandler(caplog.handler)  # "fpn_variants" may not propagate (setup_logger)
    try:
        register_coco_instances_from_path(next(_names), json_file, image_root)
    finally:
        logger.removeHandler(caplog.handler)
    assert f"{json_file}: 1 annotations have no polygon" in caplog.text
    assert "annotation 2" in caplog.text


def test_boxes_outside_their_image_are_logged_with_the_file(tmp_path, caplog):
    """Detectron2 clips boxes to the image, then drops the empty ones without a message."""
    inside = _annotation(id=1, bbox=[8, 8, 5, 5])  # partly outside: clipped, kept
    right = _annotation(id=2, bbox=[10, 2, 3, 3])  # the image is 10 x 10
    above = _annotation(id=3, bbox=[2, -6, 3, 5])
    json_file, image_root = _dataset(tmp_path, annotations=[inside, right, above])
    logger = logging.getLogger("fpn_variants.data.coco")
    logger.addHandler(caplog.handler)
    try:
        register_coco_instances_from_path(next(_names), json_file, image_root)
    finally:
        logger.removeHandler(caplog.handler)
    assert (
        f"{json_file}: 2 boxes lie entirely outside their image; Detectron2 drops these "
        "instances: annotation 2: bbox [10, 2, 3, 3] in image 1 (10 x 10); annotation 3: bbox "
        "[2, -6, 3, 5] in image 1 (10 x 10)."
    ) in caplog.text


def test_training_data_without_usable_annotations_is_a_clear_error(tmp_path):
    """Detectron2 removes images without non-crowd annotations, then asserts."""
    json_file, image_root = _dataset(tmp_path, annotations=[_annotation(iscrowd=1)])
    cfg = _setup_with("crowd_only", json_file, image_root, tmp_path)
    with pytest.raises(ValueError, match=r"DATASETS.TRAIN=\('crowd_only',\) gives no training"):
        build_resumable_train_loader(cfg)
