"""Detector inputs for exporting and checking: a resized image file or a synthetic image."""

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..data.synthetic import SyntheticSpec, render_image

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
    """A deterministic (3, H, W) float32 image in [0, 255]: the top-left corner of an image of
    the synthetic dataset (:func:`fpn_variants.data.synthetic.render_image`: a textured
    background and shapes of every size), so detectors have edges to respond to."""
    spec = SyntheticSpec(num_images=1, seed=seed, image_size=max(height, width, 64))
    image, _ = render_image(spec, 0)
    chw = image[:height, :width].transpose(2, 0, 1).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(chw))
