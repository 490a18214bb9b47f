"""A deterministic, seeded, COCO-format instance-segmentation dataset of multi-scale shapes.

Every 256 px image is a textured background (gradient + stripes + smooth and pixel noise) with
~7 solid shapes of 6 classes (disc, square, triangle, cross, star, ring); a class has its own
shape and hue. Masks never overlap; large objects may be cut by the image border, as in COCO.
Object sizes follow COCO's mix: ~40% small (area < 32^2), ~33% medium (32^2..96^2), ~27% large
(> 96^2), measured on the "area" field (the mask area) of the written annotations. Masks are
polygons (every shape, the ring included, is one simple polygon), so pycocotools, Detectron2's
``load_coco_json`` and ``INPUT.MASK_FORMAT: "polygon"`` read them; the pixels of an object are
exactly the pycocotools rasterization of its polygon.

On disk (``<dataset_dir>`` is ``<datasets root>/synthetic_multiscale``)::

    <dataset_dir>/train/000000.jpg ...
    <dataset_dir>/val/000000.jpg ...
    <dataset_dir>/annotations/instances_train.json, instances_val.json

Same parameters and seed give byte-identical annotation files. The generator version and all
parameters are stored in each file's "info", and a dataset whose info differs from the requested
one is regenerated. Generation is atomic: it writes a temporary sibling folder and renames it
into place under a file lock, so an interrupted or concurrent run never leaves half a dataset.
"""

import colorsys
import functools
import json
import logging
import math
import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from ..io import FileLock, replace_dir, staging_dir

__all__ = [
    "GENERATOR_VERSION",
    "CLASS_NAMES",
    "SyntheticSpec",
    "DEFAULT_SPLITS",
    "DATASET_DIRNAME",
    "generate_synthetic_dataset",
    "render_image",
    "render_sample",
    "size_mix",
]

logger = logging.getLogger(__name__)

# Bump whenever the rendering changes what is written for the same parameters: datasets on disk
# made by another version are then regenerated.
GENERATOR_VERSION = "1.1"

CLASS_NAMES: Tuple[str, ...] = ("disc", "square", "triangle", "cross", "star", "ring")

DATASET_DIRNAME = "synthetic_multiscale"

# COCO's area thresholds (pycocotools COCOeval.params.areaRng), in pixels.
SMALL_MAX_AREA = 32**2
LARGE_MIN_AREA = 96**2


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of one split; all of them are recorded in the annotation file's "info".

    Args:
        num_images (int): number of images.
        seed (int): seed of the split; image ``i`` uses ``np.random.default_rng([seed, i])``.
        image_size (int): images are ``image_size x image_size`` pixels.
        objects_per_image (float): mean number of objects drawn per image; ``size_mix`` splits it
            into small / medium / large means. An object that finds no free place after
            ``placement_tries`` tries is dropped (mostly medium ones, placed after the large).
        size_mix (tuple[float, float, float]): fractions of small / medium / large objects drawn;
            the defaults give ~40% / ~33% / ~27% of the objects kept (see :func:`size_mix`).
        sqrt_area_ranges (tuple of 3 (lo, hi)): range of sqrt(mask area) in pixels for each size
            bucket, sampled log-uniformly; keep them inside COCO's buckets (< 32, 32..96, > 96).
        aspect_range (tuple[float, float]): range of width/height stretch of a shape before its
            random rotation, sampled log-uniformly.
        min_contrast (float): minimum RGB distance between an object's colour and the mean
            background under it.
        class_hue_jitter (float or None): each class has its own hue (k / num_classes, in
            HSV), jittered by up to this much; None gives every object a random hue, so that
            only the shape tells the class.
        margin (int): minimum gap in pixels between two objects' masks.
        placement_tries (int): random positions tried per object.
        max_truncation (float): a large object may extend past the image border by up to this
            fraction of its box (COCO has many cut objects; it lets two fit in one image) as
            long as its visible area stays large.
        jpeg_quality (int): quality of the written JPEG files.
    """

    num_images: int
    seed: int
    image_size: int = 256
    objects_per_image: float = 8.0
    size_mix: Tuple[float, float, float] = (0.35, 0.40, 0.25)
    sqrt_area_ranges: Tuple[Tuple[float, float], ...] = ((12.0, 31.0), (33.0, 92.0), (99.0, 124.0))
    aspect_range: Tuple[float, float] = (0.7, 1.43)
    min_contrast: float = 110.0
    class_hue_jitter: Optional[float] = 0.03
    margin: int = 2
    placement_tries: int = 100
    max_truncation: float = 0.45
    jpeg_quality: int = 92
    classes: Tuple[str, ...] = field(default=CLASS_NAMES)

    def __post_init__(self):
        if self.num_images < 1:
            raise ValueError(f"SyntheticSpec.num_images must be >= 1, got {self.num_images}")
        if self.image_size < 64:
            raise ValueError(f"SyntheticSpec.image_size must be >= 64, got {self.image_size}")
        if not self.objects_per_image > 0:
            raise ValueError(
                f"SyntheticSpec.objects_per_image must be > 0, got {self.objects_per_image}"
            )
        if len(self.size_mix) != 3 or abs(sum(self.size_mix) - 1.0) > 1e-6:
            raise ValueError(
                f"SyntheticSpec.size_mix must be 3 probabilities summing to 1, got {self.size_mix}"
            )
        if len(self.sqrt_area_ranges) != 3 or any(not 0 < a <= b for a, b in self.sqrt_area_ranges):
            raise ValueError(
                "SyntheticSpec.sqrt_area_ranges must be 3 (lo, hi) pairs with 0 < lo <= hi, got "
                f"{self.sqrt_area_ranges}"
            )
        unknown = [c for c in self.classes if c not in _SHAPES]
        if unknown or not self.classes:
            raise ValueError(
                f"SyntheticSpec.classes has unknown shapes {unknown}; choose from {list(_SHAPES)}"
            )

    def to_json(self) -> dict:
        """Plain-JSON form (tuples become lists), as stored in "info"."""
        return json.loads(json.dumps(asdict(self)))


# ----------------------------------------------------------------------------------------------
# Shapes: each returns a closed simple polygon (N, 2), centred near the origin, any scale.
def _regular(n: int, phase: float = 0.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _disc() -> np.ndarray:
    return _regular(40)


def _square() -> np.ndarray:
    return _regular(4, np.pi / 4)


def _triangle() -> np.ndarray:
    return _regular(3, -np.pi / 2)


def _cross() -> np.ndarray:
    a, b = 1.0, 0.34  # arm half-length, arm half-width
    return np.array(
        [[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b]]
        + [[-a, -b], [-b, -b]]
    )


def _star() -> np.ndarray:
    outer = _regular(5, -np.pi / 2)
    inner = 0.45 * _regular(5, -np.pi / 2 + np.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _ring() -> np.ndarray:
    # A thick "C": outer arc, then inner arc back, leaving a gap of 2 * 35 degrees at angle 0.
    # One simple polygon (COCO polygons cannot have holes). The hole is kept small (inner radius
    # 0.4) so that the middle of the box, where single-stage detectors look, shows the ring.
    gap = np.deg2rad(35)
    t = np.linspace(gap, 2 * np.pi - gap, 36)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    inner = 0.4 * outer[::-1]
    return np.concatenate([outer, inner])


_SHAPES = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "star": _star,
    "ring": _ring,
}


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


_UNIT_SHAPES = {  # every unit shape has area 1
    name: fn() / math.sqrt(_polygon_area(fn())) for name, fn in _SHAPES.items()
}


# The built-in splits behind the registered names synthetic_multiscale_{train,val}. They are
# sized so that a Faster R-CNN R18-FPN learns them in a few CPU minutes (see configs/Synthetic).
DEFAULT_SPLITS: Dict[str, SyntheticSpec] = {
    "train": SyntheticSpec(num_images=1000, seed=1),
    "val": SyntheticSpec(num_images=200, seed=2),
}


# ----------------------------------------------------------------------------------------------
# Rendering
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background: float32 array (size, size, 3) in roughly [0, 255].

    A muted base colour + a linear gradient + sinusoidal stripes + smooth (bilinearly upsampled)
    noise + pixel noise, each with random direction, frequency and strength.
    """
    t = np.arange(size, dtype=np.float32) / size
    gray = rng.uniform(70, 185)
    base = (gray + 0.35 * (rng.uniform(40, 215, size=3) - gray)).astype(np.float32)

    theta = rng.uniform(0, 2 * np.pi)
    ramp = (t[:, None] * math.sin(theta) + t[None, :] * math.cos(theta)) - 0.5
    ramp_gain = rng.uniform(20, 70) * rng.uniform(0.6, 1.4, size=3).astype(np.float32)

    # sin(a x + b y + c) = sin(a x) cos(b y + c) + cos(a x) sin(b y + c): two outer products.
    phi, freq, phase = rng.uniform(0, 2 * np.pi), rng.uniform(2, 14), rng.uniform(0, 2 * np.pi)
    ax = (2 * math.pi * freq * math.cos(phi)) * t
    by = (2 * math.pi * freq * math.sin(phi)) * t + phase
    stripes = np.cos(by)[:, None] * np.sin(ax)[None, :] + np.sin(by)[:, None] * np.cos(ax)[None, :]
    stripe_gain = rng.uniform(4, 24) * rng.uniform(0.5, 1.5, size=3).astype(np.float32)

    img = base + ramp[..., None] * ramp_gain + stripes[..., None] * stripe_gain
    cells = int(rng.integers(4, 12))
    low = (rng.standard_normal((cells, cells, 3)) * rng.uniform(6, 16)).astype(np.float32)
    for c in range(3):
        img[..., c] += np.asarray(
            Image.fromarray(low[..., c], mode="F").resize((size, size), Image.BILINEAR)
        )
    img += rng.standard_normal((size, size, 3), dtype=np.float32) * np.float32(rng.uniform(3, 9))
    return img


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a bool array by a (2 * radius + 1) square, without scipy."""
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _random_color(
    rng: np.random.Generator, hue: Optional[float], under: np.ndarray, min_contrast: float
) -> np.ndarray:
    """A saturated RGB colour (3,) far from ``under`` (3,), the mean background below the object.

    ``hue`` in [0, 1) fixes the hue (the class colour); None draws it at random.
    """
    best, best_d = None, -1.0
    for _ in range(12):
        h = rng.uniform(0, 1) if hue is None else hue
        rgb = colorsys.hsv_to_rgb(h % 1.0, rng.uniform(0.6, 1.0), rng.uniform(0.5, 1.0))
        color = np.array(rgb, dtype=np.float32) * 255
        d = float(np.linalg.norm(color - under))
        if d >= min_contrast:
            return color
        if d > best_d:
            best, best_d = color, d
    return best


def _clip_to_square(poly: np.ndarray, size: int) -> np.ndarray:
    """Sutherland-Hodgman clipping of a simple polygon (N, 2) to [0, size]^2.

    A concave polygon cut into pieces stays one polygon whose pieces are joined by zero-area
    edges along the border; they add no pixel to the rasterized mask nor extent to the box.
    """
    for axis, bound, keep_below in (
        (0, 0.0, False),
        (0, size, True),
        (1, 0.0, False),
        (1, size, True),
    ):
        out = []
        n = len(poly)
        for i in range(n):
            cur, nxt = poly[i], poly[(i + 1) % n]
            cur_in = cur[axis] <= bound if keep_below else cur[axis] >= bound
            nxt_in = nxt[axis] <= bound if keep_below else nxt[axis] >= bound
            if cur_in:
                out.append(cur)
            if cur_in != nxt_in:
                t = (bound - cur[axis]) / (nxt[axis] - cur[axis])
                point = cur + t * (nxt - cur)
                point[axis] = bound
                out.append(point)
        poly = np.array(out)
    return poly


def render_sample(rng: np.random.Generator, spec: SyntheticSpec) -> Tuple[np.ndarray, List[dict]]:
    """Draw one image and its annotations.

    Returns:
        image (np.ndarray): uint8 (H, W, 3) RGB.
        annotations (list[dict]): COCO annotations without "id"/"image_id": "category_id"
            (1-based index into ``spec.classes``), "bbox" [x, y, w, h] (tight box of the polygon),
            "segmentation" [[x0, y0, x1, y1, ...]], "area" (pixel area of the rasterized mask) and
            "iscrowd" 0.
    """
    size = spec.image_size
    img = _background(rng, size)
    occupied = np.zeros((size, size), dtype=bool)
    buckets, sides, labels = _draw_objects(rng, spec)
    annotations = []
    for k in np.argsort(-sides, kind="stable"):  # big objects first: they are the hardest to fit
        shape = _rasterized_shape(rng, spec, spec.classes[labels[k]], sides[k], buckets[k] == 2)
        if shape is None:
            continue
        placement = _place(rng, spec, shape, occupied)
        if placement is not None:
            annotations.append(_paint(rng, spec, img, shape, *placement, int(labels[k])))
    image = np.clip(img, 0, 255).astype(np.uint8)
    return image, annotations


def _draw_objects(
    rng: np.random.Generator, spec: SyntheticSpec
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The objects an image tries to hold: size bucket (0 small, 1 medium, 2 large), side
    (sqrt of the area) and class index of each."""
    # Objects per size bucket: Poisson for small and medium; for large, which take the most room,
    # floor(mean) plus a Bernoulli of the fraction, so an image rarely has more than fit.
    means = spec.objects_per_image * np.asarray(spec.size_mix, dtype=np.float64)
    counts = [int(rng.poisson(means[0])), int(rng.poisson(means[1]))]
    counts.append(int(means[2]) + int(rng.uniform() < means[2] - int(means[2])))
    buckets = np.repeat(np.arange(3), counts)
    log_ranges = np.log(np.asarray(spec.sqrt_area_ranges, dtype=np.float64))
    sides = np.exp(rng.uniform(log_ranges[buckets, 0], log_ranges[buckets, 1]))
    labels = rng.integers(0, len(spec.classes), size=len(buckets))
    return buckets, sides, labels


class _Shape(NamedTuple):
    local: np.ndarray  # polygon (N, 2) in its window's coordinates
    angle: float  # rotation (radians)
    width: int  # window size, object + margin
    height: int
    out_x: int  # how far the window may stick out of the image
    out_y: int
    mask: np.ndarray  # (height, width) bool
    footprint: np.ndarray  # the mask dilated by the margin


def _rasterized_shape(
    rng: np.random.Generator, spec: SyntheticSpec, cls: str, side: float, large: bool
) -> Optional[_Shape]:
    """A randomly stretched and rotated shape of class ``cls``, rasterized once in a local window
    (object + margin); None if it cannot fit in the image."""
    log_aspect = np.log(np.asarray(spec.aspect_range, dtype=np.float64))
    m = spec.margin
    aspect = math.exp(rng.uniform(*log_aspect))
    angle = rng.uniform(0, 2 * np.pi)
    poly = _UNIT_SHAPES[cls] * [math.sqrt(aspect), 1 / math.sqrt(aspect)]
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    poly = (poly @ rot.T) * side
    # Placement tries integer shifts of the window, which move pycocotools' rasterization exactly
    # with the polygon.
    local = np.round(poly - poly.min(axis=0) + m + rng.uniform(0, 1, size=2), 2)
    w, h = (np.ceil(local.max(axis=0)).astype(int) + m + 1).tolist()
    # Large objects may stick out of the image (as in COCO) by up to this many pixels.
    out_x, out_y = (int(spec.max_truncation * w), int(spec.max_truncation * h))
    if not large:
        out_x = out_y = 0
    if w - 2 * out_x > spec.image_size or h - 2 * out_y > spec.image_size:
        return None
    mask = mask_util.decode(mask_util.frPyObjects([local.reshape(-1).tolist()], h, w)[0])
    mask = mask.astype(bool)
    return _Shape(local, angle, w, h, out_x, out_y, mask, _dilate(mask, m))


def _place(
    rng: np.random.Generator, spec: SyntheticSpec, shape: _Shape, occupied: np.ndarray
) -> Optional[Tuple[np.ndarray, np.ndarray, Tuple[int, int, int, int]]]:
    """Try random positions where ``shape`` overlaps no ``occupied`` pixel (a large object cut by
    the border must stay large); mark its footprint occupied. Returns the placed polygon, its
    mask inside the image box (x0, y0, x1, y1) and that box; None if no try fits."""
    size, w, h, mask = spec.image_size, shape.width, shape.height, shape.mask
    for _ in range(spec.placement_tries):
        x = int(rng.integers(-shape.out_x, size - w + shape.out_x + 1))
        y = int(rng.integers(-shape.out_y, size - h + shape.out_y + 1))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, size), min(y + h, size)
        inside = mask[y0 - y : y1 - y, x0 - x : x1 - x]
        if (occupied[y0:y1, x0:x1] & inside).any():
            continue
        placed = shape.local + [x, y]
        if (x, y, x1, y1) != (x0, y0, x + w, y + h):  # cut by the border
            placed = _clip_to_square(placed, size)
            rle = mask_util.frPyObjects([placed.reshape(-1).tolist()], size, size)[0]
            inside = mask_util.decode(rle)[y0:y1, x0:x1].astype(bool)
            if inside.sum() <= LARGE_MIN_AREA * 1.02:  # must stay large once cut
                continue
        occupied[y0:y1, x0:x1] |= shape.footprint[y0 - y : y1 - y, x0 - x : x1 - x]
        return placed, inside, (x0, y0, x1, y1)
    return None


def _paint(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    img: np.ndarray,
    shape: _Shape,
    placed: np.ndarray,
    inside: np.ndarray,
    box: Tuple[int, int, int, int],
    label: int,
) -> dict:
    """Paint a placed object into ``img`` and return its COCO annotation."""
    x0, y0, x1, y1 = box
    window = img[y0:y1, x0:x1]
    hue = None
    if spec.class_hue_jitter is not None:
        hue = label / len(spec.classes) + rng.uniform(-1, 1) * spec.class_hue_jitter
    color = _random_color(rng, hue, window[inside].mean(axis=0), spec.min_contrast)
    # Flat colour with a soft shading ramp and a little noise: an object, not a sticker.
    yy, xx = np.nonzero(inside)
    ramp = (xx - xx.mean()) * math.cos(shape.angle) + (yy - yy.mean()) * math.sin(shape.angle)
    shade = (ramp / max(shape.width, shape.height))[:, None] * rng.uniform(10, 35)
    noise = rng.standard_normal((len(xx), 3), dtype=np.float32) * 3
    window[yy, xx] = color + shade + noise
    placed = np.round(placed, 2)
    lo, hi = placed.min(axis=0), placed.max(axis=0)
    return {
        "category_id": label + 1,
        "bbox": [round(float(v), 2) for v in (lo[0], lo[1], *(hi - lo))],
        "segmentation": [placed.reshape(-1).tolist()],
        "area": float(len(xx)),
        "iscrowd": 0,
    }


# ----------------------------------------------------------------------------------------------
# Writing, atomically
def _info(split: str, spec: SyntheticSpec) -> dict:
    return {
        "description": f"fpn_variants synthetic multi-scale shapes, split '{split}'",
        "generator": "fpn_variants.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "split": split,
        "params": spec.to_json(),
    }


def render_image(spec: SyntheticSpec, index: int) -> Tuple[np.ndarray, List[dict]]:
    """Image ``index`` of the split ``spec`` and its annotations (:func:`render_sample` with the
    image's own seed)."""
    rng = np.random.default_rng([spec.seed, index])
    with warnings.catch_warnings():
        # pycocotools 2.0.x under numpy 2: "__array__ implementation doesn't accept a copy
        # keyword", once per decoded mask.
        warnings.simplefilter("ignore", DeprecationWarning)
        return render_sample(rng, spec)


def _write_image(image_dir: str, spec: SyntheticSpec, index: int) -> List[dict]:
    """Render image ``index`` of a split, write it, return its annotations (no ids)."""
    image, anns = render_image(spec, index)
    path = os.path.join(image_dir, f"{index:06d}.jpg")
    Image.fromarray(image).save(path, quality=spec.jpeg_quality)
    return anns


def _num_workers(num_images: int) -> int:
    # Forked workers (Linux): each image has its own seed, so the output does not depend on
    # their number. Other platforms would re-import torch in every spawned worker: stay serial.
    if not sys.platform.startswith("linux") or num_images < 64:
        return 1
    if multiprocessing.current_process().daemon:  # daemonic processes cannot have children
        return 1
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _write_split(dataset_dir: str, split: str, spec: SyntheticSpec) -> None:
    image_dir = os.path.join(dataset_dir, split)
    os.makedirs(image_dir, exist_ok=True)
    write = functools.partial(_write_image, image_dir, spec)
    workers = _num_workers(spec.num_images)
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            per_image = pool.map(write, range(spec.num_images), chunksize=16)
    else:
        per_image = [write(i) for i in range(spec.num_images)]
    images, annotations = [], []
    for i, anns in enumerate(per_image):
        images.append(
            {
                "id": i + 1,
                "file_name": f"{i:06d}.jpg",
                "height": spec.image_size,
                "width": spec.image_size,
            }
        )
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
    coco = {
        "info": _info(split, spec),
        "licenses": [],
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "shape"}
            for k, name in enumerate(spec.classes)
        ],
        "images": images,
        "annotations": annotations,
    }
    ann_dir = os.path.join(dataset_dir, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    with open(os.path.join(ann_dir, f"instances_{split}.json"), "w") as f:
        json.dump(coco, f, separators=(",", ":"))


def split_paths(dataset_dir: str, split: str) -> Tuple[str, str]:
    """(json_file, image_root) of ``split`` inside ``dataset_dir``."""
    return (
        os.path.join(dataset_dir, "annotations", f"instances_{split}.json"),
        os.path.join(dataset_dir, split),
    )


def _read_info(json_file: str) -> Optional[dict]:
    try:
        with open(json_file) as f:
            return json.load(f).get("info")
    except (OSError, ValueError, AttributeError):
        return None


def _is_current(dataset_dir: str, splits: Dict[str, SyntheticSpec]) -> bool:
    for split, spec in splits.items():
        json_file, image_root = split_paths(dataset_dir, split)
        if _read_info(json_file) != _info(split, spec) or not os.path.isdir(image_root):
            return False
    return True


def generate_synthetic_dataset(
    dataset_dir: str, splits: Optional[Dict[str, SyntheticSpec]] = None
) -> Dict[str, Tuple[str, str]]:
    """Make sure ``dataset_dir`` holds the dataset described by ``splits``; generate it if not.

    A no-op (one json read per split) when the files on disk carry the same generator version
    and parameters. Otherwise all splits are written to a temporary sibling folder that is then
    renamed to ``dataset_dir`` (replacing a stale one), under an exclusive lock on
    ``<dataset_dir>.lock``, so concurrent callers (e.g. several training processes) generate once.

    Args:
        dataset_dir (str): folder of the dataset, e.g. ``datasets/synthetic_multiscale``.
        splits (dict[str, SyntheticSpec] or None): split name -> parameters;
            :data:`DEFAULT_SPLITS` when None.

    Returns:
        dict[str, tuple[str, str]]: split name -> (json_file, image_root).
    """
    splits = DEFAULT_SPLITS if splits is None else splits
    dataset_dir = os.path.abspath(os.path.expanduser(dataset_dir))
    paths = {split: split_paths(dataset_dir, split) for split in splits}
    if _is_current(dataset_dir, splits):
        return paths

    parent, name = os.path.split(dataset_dir)
    os.makedirs(parent, exist_ok=True)
    with FileLock(os.path.join(parent, f".{name}.lock")):
        if _is_current(dataset_dir, splits):  # another process made it while we waited
            return paths
        start = time.perf_counter()
        logger.info(f"Generating synthetic dataset {dataset_dir} (splits: {list(splits)}) ...")
        with staging_dir(dataset_dir) as tmp:
            for split, spec in splits.items():
                _write_split(tmp, split, spec)
            replace_dir(tmp, dataset_dir)
        logger.info(
            f"Generated {sum(s.num_images for s in splits.values())} images in "
            f"{time.perf_counter() - start:.1f} s."
        )
    return paths


def size_mix(json_file: str) -> Dict[str, float]:
    """Fractions of small / medium / large annotations (COCO's thresholds on "area").

    Returns:
        dict: {"small": f, "medium": f, "large": f, "num_annotations": n}.
    """
    with open(json_file) as f:
        areas = np.array([a["area"] for a in json.load(f)["annotations"]], dtype=np.float64)
    n = max(len(areas), 1)
    return {
        "small": float((areas < SMALL_MAX_AREA).sum() / n),
        "medium": float(((areas >= SMALL_MAX_AREA) & (areas <= LARGE_MIN_AREA)).sum() / n),
        "large": float((areas > LARGE_MIN_AREA).sum() / n),
        "num_annotations": int(len(areas)),
    }
