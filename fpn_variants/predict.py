"""Run a trained detector on images and draw its predictions (what ``tools/demo.py`` and the
side-by-side detections picture use)."""

import glob
import os
from typing import List, Optional, Sequence, Tuple

import detectron2.data.transforms as T
import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.data import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.modeling import build_model
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

from .checkpoint import Checkpointer

__all__ = [
    "IMAGE_EXTENSIONS",
    "Predictor",
    "draw_predictions",
    "image_paths",
    "read_image_file",
    "to_rgb",
]

# Files of a folder given as input that are read as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Color of the ground-truth boxes (dashed, under the predictions).
GROUND_TRUTH_COLOR = (1.0, 1.0, 1.0)


class Predictor:
    """Detectron2's ``DefaultPredictor`` with this project's strict, safe checkpoint loading:
    an image (H, W, 3) uint8 in ``cfg.INPUT.FORMAT`` in, its ``Instances`` at the image's size
    out (on the CPU).

    Raises:
        ValueError: ``cfg.MODEL.WEIGHTS`` is empty (the predictions of random weights mean
            nothing), or the weights do not fit the model.
    """

    def __init__(self, cfg: CfgNode):
        if not cfg.MODEL.WEIGHTS:
            raise ValueError(
                "the config has no weights (MODEL.WEIGHTS is empty): give a trained model, "
                "e.g. MODEL.WEIGHTS output/synthetic/faster_rcnn_R18_FPN/model_final.pth, or a "
                "model-zoo name"
            )
        self.model = build_model(cfg).eval()
        Checkpointer(self.model).load(cfg.MODEL.WEIGHTS)
        size = cfg.INPUT.MIN_SIZE_TEST
        self.resize = T.ResizeShortestEdge([size, size], cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> Instances:
        height, width = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        output = self.model([{"image": tensor, "height": height, "width": width}])[0]
        return output["instances"].to("cpu")


def to_rgb(image: np.ndarray, input_format: str) -> np.ndarray:
    """An (H, W, 3) image of ``input_format`` ("BGR" or "RGB") as RGB."""
    return image[:, :, ::-1] if input_format == "BGR" else image


def draw_predictions(
    image_rgb: np.ndarray,
    instances: Instances,
    metadata: Metadata,
    score_threshold: float = 0.5,
    ground_truth: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, int]:
    """Detectron2's drawing of the predicted boxes (class and score) with a score of at least
    ``score_threshold``, over the ground-truth boxes ``ground_truth`` (N, 4) XYXY (dashed white)
    when given.

    Returns:
        (np.ndarray, int): the picture (H, W, 3) uint8 RGB and the number of boxes drawn.
    """
    visualizer = Visualizer(image_rgb, metadata)
    for box in [] if ground_truth is None else ground_truth:
        visualizer.draw_box(box, edge_color=GROUND_TRUTH_COLOR, line_style="--")
    kept = instances[instances.scores >= score_threshold]
    picture = visualizer.draw_instance_predictions(kept).get_image()
    return picture, len(kept)


def image_paths(inputs: Sequence[str]) -> List[str]:
    """The image files named by ``inputs``: files, glob patterns ("data/*.jpg") or folders (their
    files ending in one of :data:`IMAGE_EXTENSIONS`, sorted), in the order given.

    Raises:
        FileNotFoundError: a file does not exist, a pattern matches nothing, or a folder holds
            no image.
    """
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, name)
                for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise FileNotFoundError(
                    f"folder {item} holds no image (files ending in {', '.join(IMAGE_EXTENSIONS)})"
                )
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            if not found:
                raise FileNotFoundError(f"pattern {item} matches no file")
        elif os.path.isfile(item):
            found = [item]
        else:
            raise FileNotFoundError(f"input image {item} does not exist")
        paths += found
    return paths


def read_image_file(path: str, input_format: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 in ``input_format``; a clear error if it cannot be
    read."""
    try:
        return read_image(path, format=input_format)
    except (OSError, ValueError, SyntaxError) as e:  # PIL: UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {path}: {e}") from e
