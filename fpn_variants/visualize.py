"""Pictures: per-level feature maps of one image for each neck, the scale-assignment
histogram of a dataset (which pyramid level each ground-truth box is pooled from), and the
detections of several models on the same images side by side."""

import os
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.structures import Boxes, BoxMode

from .engine import Checkpointer
from .predict import Predictor, draw_predictions, read_image_file, to_rgb

__all__ = [
    "box_levels",
    "feature_energy",
    "plot_feature_maps",
    "plot_scale_histogram",
    "pooler_levels",
    "render_predictions_grid",
    "test_resize_scale",
]

# Layout of the detections grid: the side of each picture and the height of the column titles.
GRID_CELL_PX = 320
GRID_TITLE_PX = 36


def _pyplot():
    # Imported here (heavy, and its backend must be chosen before pyplot is imported).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def feature_energy(cfg: CfgNode, weights: str = "") -> Dict:
    """Run the first validation image through the model's bottom-up network and neck.

    Returns:
        dict: "image" (H, W, 3 uint8 RGB) and "levels" {"p<l>": (h, w) array, the mean absolute
        activation over channels}.
    """
    model = build_model(cfg).eval()
    if weights:
        Checkpointer(model).load(weights)
    sample = next(iter(build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])))[0]
    images = model.preprocess_image([sample])
    features = model.backbone(images.tensor)
    image = sample["image"].permute(1, 2, 0).numpy()
    if cfg.INPUT.FORMAT == "BGR":
        image = image[:, :, ::-1]
    levels = {name: f[0].abs().mean(dim=0).numpy() for name, f in features.items()}
    return {"image": np.ascontiguousarray(image).astype(np.uint8), "levels": levels}


def plot_feature_maps(maps: Dict[str, Dict], path: str) -> None:
    """One row per neck: the input image, then each output level (own color scale per map)."""
    plt = _pyplot()
    names = list(maps)
    cols = 1 + max(len(m["levels"]) for m in maps.values())
    fig, axes = plt.subplots(len(names), cols, figsize=(2.2 * cols, 2.3 * len(names)))
    axes = np.atleast_2d(axes)
    for row, name in enumerate(names):
        axes[row, 0].imshow(maps[name]["image"])
        axes[row, 0].set_ylabel(name, fontsize=11)
        axes[row, 0].set_title("input" if row == 0 else "", fontsize=9)
        for col, (level, energy) in enumerate(maps[name]["levels"].items(), start=1):
            axes[row, col].imshow(energy, cmap="magma")
            axes[row, col].set_title(f"{level} {energy.shape[0]}x{energy.shape[1]}", fontsize=9)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("Mean |activation| per output level (first validation image)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def box_levels(
    dataset: str,
    min_level: int = 2,
    max_level: int = 5,
    canonical_box_size: int = 224,
    canonical_level: int = 4,
    scale: float = 1.0,
) -> Dict[str, np.ndarray]:
    """Pyramid level of every ground-truth box of ``dataset`` as Detectron2's ROIPooler assigns
    it: k = floor(k0 + log2(sqrt(wh) / s0)), clamped to [min_level, max_level], with
    s0 = ``canonical_box_size`` and k0 = ``canonical_level``.

    Args:
        scale (float): factor applied to the boxes first (the test-time resize of the images).

    Returns:
        dict: "levels" (assigned, clamped) and "unclamped" (the formula alone) per box, and
        "rule" (s0, k0).
    """
    boxes = []
    for record in DatasetCatalog.get(dataset):
        for ann in record.get("annotations", []):
            box = BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
            boxes.append([c * scale for c in box])
    boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    assigned = assign_boxes_to_levels(
        [boxes], min_level, max_level, canonical_box_size, canonical_level
    )
    sizes = torch.sqrt(boxes.area())
    unclamped = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return {
        "levels": (assigned + min_level).numpy(),
        "unclamped": unclamped.numpy(),
        "rule": (canonical_box_size, canonical_level),
    }


def plot_scale_histogram(
    levels: Dict[str, np.ndarray], path: str, title: str, level_range: Sequence[int]
) -> None:
    """Bar chart of boxes per assigned level, with the unclamped formula's spread beside it."""
    plt = _pyplot()
    low = int(min(levels["unclamped"].min(), level_range[0]))
    high = int(max(levels["unclamped"].max(), level_range[-1]))
    ks = list(range(low, high + 1))
    assigned = [int((levels["levels"] == k).sum()) for k in ks]
    formula = [int((levels["unclamped"] == k).sum()) for k in ks]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(len(ks))
    size, level = levels["rule"]
    rule = f"floor({level} + log2(sqrt(wh)/{size:g}))"
    ax.bar(x - 0.2, formula, 0.4, label=rule, color="#bbbbbb")
    clamp = f"P{level_range[0]}-P{level_range[-1]}"
    ax.bar(x + 0.2, assigned, 0.4, label=f"assigned (clamped to {clamp})", color="#1f77b4")
    for xi, count in zip(x, assigned):
        if count:
            ax.text(xi + 0.2, count, str(count), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([f"P{k}" for k in ks])
    ax.set_ylabel("ground-truth boxes")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: str) -> None:
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def test_resize_scale(cfg: CfgNode, dataset: str) -> float:
    """The factor by which the test-time resize scales the dataset's first image."""
    record = DatasetCatalog.get(dataset)[0]
    short, long = sorted((record["height"], record["width"]))
    scale = cfg.INPUT.MIN_SIZE_TEST / short
    if long * scale > cfg.INPUT.MAX_SIZE_TEST:
        scale = cfg.INPUT.MAX_SIZE_TEST / long
    return scale


def pooler_levels(cfg: CfgNode) -> List[int]:
    """The levels the ROI heads pool from (e.g. [2, 3, 4, 5] for P2-P5)."""
    return sorted(int(name[1:]) for name in cfg.MODEL.ROI_HEADS.IN_FEATURES)


def _ground_truth_boxes(record: Dict) -> np.ndarray:
    """(N, 4) XYXY boxes of a dataset record's annotations."""
    boxes = [
        BoxMode.convert(ann["bbox"], ann["bbox_mode"], BoxMode.XYXY_ABS)
        for ann in record.get("annotations", [])
    ]
    return np.array(boxes, dtype=np.float32).reshape(-1, 4)


def _predictions_column(
    cfg: CfgNode, records: List[Dict], metadata, score_threshold: float
) -> Tuple[List[np.ndarray], List[int]]:
    """One model's pictures of ``records`` (RGB) and the number of boxes drawn on each."""
    predictor = Predictor(cfg)
    pictures, counts = [], []
    for record in records:
        image = read_image_file(record["file_name"], cfg.INPUT.FORMAT)
        instances = predictor(image)
        rgb = to_rgb(image, cfg.INPUT.FORMAT)
        picture, count = draw_predictions(
            rgb, instances, metadata, score_threshold, _ground_truth_boxes(record)
        )
        pictures.append(picture)
        counts.append(count)
    return pictures, counts


def _save_grid(titles: Sequence[str], pictures: List[List[np.ndarray]], counts, path: str):
    """Save ``pictures[column][row]`` as a grid of GRID_CELL_PX squares under the column
    ``titles``, each with its number of boxes in a corner."""
    plt = _pyplot()
    dpi, rows = 100, len(pictures[0])
    width, height = len(titles) * GRID_CELL_PX, GRID_TITLE_PX + rows * GRID_CELL_PX
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    cell_w, cell_h = GRID_CELL_PX / width, GRID_CELL_PX / height
    for col, title in enumerate(titles):
        fig.text(
            (col + 0.5) / len(titles),
            1 - GRID_TITLE_PX / 2 / height,
            title,
            ha="center",
            va="center",
        )
        for row, picture in enumerate(pictures[col]):
            top = (GRID_TITLE_PX + (row + 1) * GRID_CELL_PX) / height
            ax = fig.add_axes([col * cell_w, 1 - top, cell_w, cell_h])
            ax.imshow(picture)
            ax.set_axis_off()
            label = dict(color="white", fontsize=7, va="top")
            box = dict(facecolor="black", alpha=0.5, pad=1, lw=0)
            ax.text(3, 3, f"{counts[col][row]} boxes", bbox=box, **label)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def render_predictions_grid(
    columns: Sequence[Tuple[str, CfgNode]],
    dataset_name: str,
    num_images: int,
    path: str,
    score_threshold: float = 0.5,
) -> List[List[int]]:
    """The first ``num_images`` images of ``dataset_name``, one row each, with one column per
    model: its predicted boxes (class and score, at least ``score_threshold``) over the ground
    truth (dashed white). Each column is (title, config with MODEL.WEIGHTS set). The PNG at
    ``path`` is ``len(columns) * GRID_CELL_PX`` wide and ``GRID_TITLE_PX + num_images *
    GRID_CELL_PX`` high (fewer rows if the dataset has fewer images).

    Returns:
        list[list[int]]: boxes drawn per column, per image.
    """
    if not columns:
        raise ValueError("no models to draw: give at least one (title, config) column")
    records = DatasetCatalog.get(dataset_name)[:num_images]
    if not records:
        raise ValueError(f"dataset {dataset_name!r} has no images to draw")
    metadata = MetadataCatalog.get(dataset_name)
    pictures, counts = [], []
    for _, cfg in columns:
        column, drawn = _predictions_column(cfg, records, metadata, score_threshold)
        pictures.append(column)
        counts.append(drawn)
    _save_grid([title for title, _ in columns], pictures, counts, path)
    return counts
