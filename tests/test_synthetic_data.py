"""The built-in synthetic dataset: determinism, COCO validity, size mix, registration, and the
validation of COCO files registered by path."""

import colorsys
import json
import os
from dataclasses import replace

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO

import fpn_variants  # noqa: F401  registers the built-in datasets
from fpn_variants.data import (
    CLASS_NAMES,
    DEFAULT_SPLITS,
    SYNTHETIC_DATASETS,
    SyntheticSpec,
    generate_synthetic_dataset,
    register_coco_instances_from_path,
    size_mix,
    synthetic,
    validate_coco_json,
    variant_splits,
)

# pycocotools 2.0.x under numpy 2 warns on every mask decode.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

TINY = {"train": SyntheticSpec(num_images=12, seed=1), "val": SyntheticSpec(num_images=6, seed=2)}


def _read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """(dataset_dir, paths) of a small dataset made once for the read-only tests."""
    dataset_dir = str(tmp_path_factory.mktemp("data") / "synthetic_multiscale")
    return dataset_dir, generate_synthetic_dataset(dataset_dir, TINY)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_dataset):
    _, paths = tiny_dataset
    again = generate_synthetic_dataset(str(tmp_path / "again"), TINY)
    for split in TINY:
        assert _read(again[split][0]) == _read(paths[split][0])
        first_image = os.path.join(paths[split][1], "000000.jpg")
        assert _read(os.path.join(again[split][1], "000000.jpg")) == _read(first_image)
    other = {"train": SyntheticSpec(num_images=12, seed=7)}
    other_paths = generate_synthetic_dataset(str(tmp_path / "other"), other)
    a = json.loads(_read(paths["train"][0]))
    b = json.loads(_read(other_paths["train"][0]))
    assert a["annotations"] != b["annotations"]


def test_pycocotools_loads_and_geometry_is_consistent(tiny_dataset):
    _, paths = tiny_dataset
    for split, spec in TINY.items():
        coco = COCO(paths[split][0])
        assert len(coco.getImgIds()) == spec.num_images
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASS_NAMES)
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= spec.num_images  # at least one object per image on average
        for ann in anns:
            img = coco.imgs[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0
            assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            mask = coco.annToMask(ann)
            assert mask.sum() == ann["area"] > 0
            ys, xs = np.nonzero(mask)
            # pixels of the mask lie in the box (pixel i covers [i, i + 1))
            assert xs.min() >= np.floor(x) and xs.max() + 1 <= np.ceil(x + w)
            assert ys.min() >= np.floor(y) and ys.max() + 1 <= np.ceil(y + h)
        # objects never overlap: the masks of one image are disjoint
        for img_id in coco.getImgIds()[:4]:
            masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))]
            assert np.sum(masks, axis=0).max() <= 1


def test_size_mix_is_coco_like(tmp_path):
    paths = generate_synthetic_dataset(
        str(tmp_path / "mix"), {"val": SyntheticSpec(num_images=150, seed=3)}
    )
    mix = size_mix(paths["val"][0])
    assert mix["num_annotations"] > 400
    assert 0.32 <= mix["small"] <= 0.48, mix
    assert 0.27 <= mix["medium"] <= 0.43, mix
    assert 0.18 <= mix["large"] <= 0.32, mix


def test_pixels_match_annotations():
    """The painted object is the rasterized polygon: its colour differs from the background."""
    spec = SyntheticSpec(num_images=1, seed=0)
    image, anns = synthetic.render_sample(np.random.default_rng([0, 0]), spec)
    assert image.shape == (spec.image_size, spec.image_size, 3) and image.dtype == np.uint8
    for ann in anns:
        rle = mask_util.frPyObjects(ann["segmentation"], spec.image_size, spec.image_size)
        mask = mask_util.decode(mask_util.merge(rle)).astype(bool)
        inside = image[mask].astype(np.float32)
        # a flat colour with mild shading: small spread inside the object
        assert inside.std(axis=0).max() < 25


def _class_from_hue_accuracy(spec: SyntheticSpec, images: int) -> float:
    """How often an object's class is the one whose hue (k / 6) is nearest its pixels' hue."""
    hits = []
    for i in range(images):
        image, anns = synthetic.render_sample(np.random.default_rng([0, i]), spec)
        for ann in anns:
            rle = mask_util.frPyObjects(ann["segmentation"], spec.image_size, spec.image_size)
            mask = mask_util.decode(mask_util.merge(rle)).astype(bool)
            hue = colorsys.rgb_to_hsv(*(np.median(image[mask], axis=0) / 255))[0]
            hits.append(
                round(hue * len(spec.classes)) % len(spec.classes) == ann["category_id"] - 1
            )
    return float(np.mean(hits))


def test_colour_tells_the_class_except_in_the_random_hue_variant():
    spec = SyntheticSpec(num_images=1, seed=0)
    assert _class_from_hue_accuracy(spec, 4) > 0.9
    random_hue = variant_splits("synthetic_multiscale_random_hue")["train"]
    assert random_hue == replace(DEFAULT_SPLITS["train"], class_hue_jitter=None)
    assert _class_from_hue_accuracy(replace(spec, class_hue_jitter=None), 4) < 0.4


def test_second_call_is_a_noop_and_stale_data_is_regenerated(tmp_path):
    dataset_dir = str(tmp_path / "ds")
    spec = {"val": SyntheticSpec(num_images=3, seed=5)}
    json_file, _ = generate_synthetic_dataset(dataset_dir, spec)["val"]
    mtime = os.stat(json_file).st_mtime_ns
    generate_synthetic_dataset(dataset_dir, spec)
    assert os.stat(json_file).st_mtime_ns == mtime
    info = json.loads(_read(json_file))["info"]
    assert info["generator_version"] == synthetic.GENERATOR_VERSION
    assert info["params"]["num_images"] == 3 and info["params"]["seed"] == 5

    generate_synthetic_dataset(dataset_dir, {"val": SyntheticSpec(num_images=4, seed=5)})
    assert len(json.loads(_read(json_file))["images"]) == 4
    assert sorted(os.listdir(tmp_path)) == [".ds.lock", "ds"]  # no temporary folders left


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def crash(dataset_dir, split, spec):
        os.makedirs(os.path.join(dataset_dir, split))
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "_write_split", crash)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_dataset(str(tmp_path / "ds"), TINY)
    assert os.listdir(tmp_path) == [".ds.lock"]


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="size_mix"):
        SyntheticSpec(num_images=1, seed=0, size_mix=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="unknown shapes"):
        SyntheticSpec(num_images=1, seed=0, classes=("disc", "blob"))


def test_registered_names_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("FPN_VARIANTS_DATASETS", str(tmp_path))
    monkeypatch.setattr(synthetic, "DEFAULT_SPLITS", TINY)
    assert set(SYNTHETIC_DATASETS) == {
        f"synthetic_multiscale{variant}_{split}"
        for variant in ("", "_random_hue")
        for split in TINY
    }
    for name, (folder, split) in SYNTHETIC_DATASETS.items():
        assert name in DatasetCatalog.list()
        dicts = DatasetCatalog.get(name)
        assert len(dicts) == TINY[split].num_images
        assert all(d["file_name"].startswith(str(tmp_path / folder) + os.sep) for d in dicts)
        assert all(os.path.isfile(d["file_name"]) for d in dicts)
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == list(CLASS_NAMES)
        assert meta.evaluator_type == "coco"
        assert meta.json_file.startswith(str(tmp_path))
        assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(6)}


# ------------------------------------------------------------------------------------------------
# COCO files registered by path
def _coco(**overrides):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 4], "iscrowd": 0}
        ],
        "categories": [{"id": 3, "name": "thing"}],
    }
    data.update(overrides)
    return data


def _write(tmp_path, content, name="ann.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_register_by_path(tiny_dataset):
    _, paths = tiny_dataset
    json_file, image_root = paths["val"]
    summary = register_coco_instances_from_path("test_by_path_val", json_file, image_root)
    assert summary["num_images"] == TINY["val"].num_images
    assert MetadataCatalog.get("test_by_path_val").thing_classes == list(CLASS_NAMES)
    assert len(DatasetCatalog.get("test_by_path_val")) == TINY["val"].num_images
    # same paths again: no-op; other paths under the same name: clear error
    register_coco_instances_from_path("test_by_path_val", json_file, image_root)
    with pytest.raises(ValueError, match="already registered"):
        register_coco_instances_from_path("test_by_path_val", paths["train"][0], image_root)


@pytest.mark.parametrize(
    "content, error, message",
    [
        ("{not json", ValueError, "not valid JSON"),
        ([1, 2], ValueError, "top level must be a JSON object"),
        (_coco(categories=None), ValueError, "'categories' is missing"),
        (
            _coco(annotations=[{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 2, 2]}]),
            ValueError,
            r"unknown category ids .*category_id 9",
        ),
        (
            _coco(annotations=[{"id": 4, "image_id": 1, "category_id": 3, "bbox": [0, 0, 0, 2]}]),
            ValueError,
            r"non-positive width or height.*annotation 4",
        ),
        (
            _coco(annotations=[{"id": 1, "image_id": 2, "category_id": 3, "bbox": [0, 0, 2, 2]}]),
            ValueError,
            "unknown image ids",
        ),
        (
            _coco(annotations=[{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2]}]),
            ValueError,
            "list of 4 finite numbers",
        ),
        (_coco(images=[{"id": 1, "file_name": "a.jpg"}]), ValueError, "lacks"),
    ],
)
def test_broken_annotation_files_give_clear_errors(tmp_path, content, error, message):
    json_file = _write(tmp_path, content)
    with pytest.raises(error, match=message) as info:
        validate_coco_json(json_file)
    assert json_file in str(info.value)
    name = f"broken_{abs(hash(message))}"
    with pytest.raises(error):
        register_coco_instances_from_path(name, json_file, str(tmp_path))
    assert name not in DatasetCatalog.list()


def test_missing_files_give_clear_errors(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        validate_coco_json(missing)
    json_file = _write(tmp_path, _coco())
    assert validate_coco_json(json_file)["thing_classes"] == ["thing"]
    with pytest.raises(FileNotFoundError, match="a.jpg"):
        validate_coco_json(json_file, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        validate_coco_json(json_file, str(tmp_path / "no_such_folder"))
