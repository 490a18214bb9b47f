"""Detector inputs for exporting and checking: a resized image file or a synthetic image."""

from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["sample_image", "synthetic_image"]


def sample_image(cfg, path: Optional[str] = None) -> Tensor:
    """A detector input (3, H, W) float32 as ``DefaultPredictor`` prepares it: the image file
    ``path`` read in ``cfg.INPUT.FORMAT`` and resized by ``ResizeShortestEdge(MIN_SIZE_TEST,
    MAX_SIZE_TEST)``; without ``path``, a :func:`synthetic_image` of that size (4:3)."""
    import detectron2.data.transforms as T
    from detectron2.data.detection_utils import read_image

    short, long = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    if path is None:
        return synthetic_image(short, min(short * 4 // 3, long))
    image = read_image(path, format=cfg.INPUT.FORMAT)
    image = T.ResizeShortestEdge([short, short], long).get_transform(image).apply_image(image)
    return torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))


def synthetic_image(height: int = 128, width: int = 128, seed: int = 0) -> Tensor:
    """A deterministic (3, H, W) float32 image in [0, 255]: a smooth background with a few
    flat-coloured rectangles and discs, so detectors have edges to respond to."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([60 + 80 * xx / width, 60 + 80 * yy / height, 100 + 0 * xx]).astype(np.float32)
    for k in range(6):
        color = rng.uniform(0, 255, size=(3, 1)).astype(np.float32)
        cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
        ry, rx = rng.uniform(0.08, 0.3) * height, rng.uniform(0.08, 0.3) * width
        if k % 2:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        image[:, inside] = color
    return torch.from_numpy(image)
