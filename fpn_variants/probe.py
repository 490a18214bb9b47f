"""How much of an object's class each feature of a trained detector holds: a linear probe.

Every ground-truth box of a dataset is pooled from each feature map (RoIAlign on a 7x7 grid,
averaged to one vector of the map's channels): the input image itself (its 3 colour channels),
each bottom-up feature (``res2``...) and each neck output (``p2``...). A multinomial logistic
regression fitted on the boxes of one dataset predicts the class of another's boxes, one probe per
feature. A feature on which the probe is right for nearly every box already holds the class; the
FPN paper's top-down path exists to bring class information ("semantics") down to the fine levels,
so it has the least to add where the fine bottom-up levels hold it already.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import detectron2.data.transforms as T
import torch
from detectron2.config import CfgNode
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
)
from detectron2.modeling import build_model
from torch import Tensor, nn
from torchvision.ops import roi_align

from .checkpoint import Checkpointer

__all__ = ["BoxFeatures", "ProbeResult", "box_features", "fit_probe", "probe_accuracy", "probe"]

IMAGE = "image"
POOL_SIZE = 7
# COCO's size buckets, on the box area (pixels of the image the model sees).
SIZE_BUCKETS = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, float("inf"))}


@dataclass
class BoxFeatures:
    """The pooled features of N boxes: ``features`` {name: (N, C)}, ``labels`` (N,) class ids,
    ``areas`` (N,) box areas in pixels."""

    features: Dict[str, Tensor]
    labels: Tensor
    areas: Tensor


@dataclass
class ProbeResult:
    """One feature's probe: its channels, and the test accuracy overall and per size bucket
    (``None`` for a bucket without boxes), with the bucket's box count."""

    channels: int
    accuracy: float
    by_size: Dict[str, Tuple[Optional[float], int]]


def _mapper(cfg: CfgNode) -> DatasetMapper:
    """The test-time resize, keeping the annotations (the test mapper drops them)."""
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")
    return DatasetMapper(cfg, is_train=True, augmentations=[resize])


def _pool(feature: Tensor, boxes: Tensor, stride: int) -> Tensor:
    """(1, C, h, w) feature, (N, 4) XYXY image boxes -> (N, C): RoIAlign 7x7, then the mean."""
    feature = feature.float().contiguous()
    pooled = roi_align(feature, [boxes], POOL_SIZE, 1.0 / stride, sampling_ratio=0, aligned=True)
    return pooled.mean(dim=(2, 3))


@torch.no_grad()
def _image_features(model: nn.Module, sample: Dict) -> Dict[str, Tensor]:
    """The pooled features of one mapped sample's boxes, by feature name."""
    images = model.preprocess_image([sample])
    boxes = sample["instances"].gt_boxes.tensor.to(images.tensor.device)
    backbone = model.backbone
    bottom_up = backbone.bottom_up(images.tensor)
    maps = {IMAGE: (images.tensor, 1)}
    strides = {**backbone.bottom_up.output_shape(), **backbone.output_shape()}
    for name, feature in {**bottom_up, **backbone.forward_neck(bottom_up)}.items():
        maps[name] = (feature, strides[name].stride)
    return {name: _pool(feature, boxes, stride) for name, (feature, stride) in maps.items()}


def box_features(model: nn.Module, cfg: CfgNode, dataset: str, max_images: int) -> BoxFeatures:
    """Pool every ground-truth box of the first ``max_images`` images of ``dataset``."""
    records = DatasetCatalog.get(dataset)[:max_images]
    loader = build_detection_test_loader(records, mapper=_mapper(cfg), num_workers=0)
    parts: Dict[str, List[Tensor]] = {}
    labels, areas = [], []
    for (sample,) in loader:
        if len(sample["instances"]) == 0:
            continue
        for name, pooled in _image_features(model, sample).items():
            parts.setdefault(name, []).append(pooled.cpu())
        labels.append(sample["instances"].gt_classes)
        areas.append(sample["instances"].gt_boxes.area())
    if not labels:
        raise ValueError(f"{dataset}: no ground-truth boxes in its first {max_images} images")
    features = {name: torch.cat(chunks) for name, chunks in parts.items()}
    return BoxFeatures(features, torch.cat(labels), torch.cat(areas))


class _Standardize(nn.Module):
    """(x - mean) / std, in float64 (the probe's precision)."""

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.std).double()


def fit_probe(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float = 1e-4, steps: int = 200
) -> nn.Module:
    """A linear classifier of ``y`` (N,) from ``x`` (N, C): features standardised on ``x``, then
    multinomial logistic regression with L2 ``weight_decay``, fitted by L-BFGS (deterministic)."""
    standardize = _Standardize(x.mean(dim=0), x.std(dim=0).clamp_min(1e-6))
    linear = nn.Linear(x.shape[1], num_classes).double()
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    inputs = standardize(x)
    optimizer = torch.optim.LBFGS(
        linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(linear(inputs), y)
        loss = loss + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return nn.Sequential(standardize, linear).eval()


@torch.no_grad()
def probe_accuracy(classifier: nn.Module, x: Tensor, y: Tensor) -> float:
    """The fraction of rows of ``x`` whose class ``classifier`` predicts right."""
    return (classifier(x).argmax(dim=1) == y).double().mean().item()


def _result(classifier: nn.Module, name: str, test: BoxFeatures) -> ProbeResult:
    x = test.features[name]
    by_size = {}
    for bucket, (low, high) in SIZE_BUCKETS.items():
        keep = (test.areas >= low) & (test.areas < high)
        count = int(keep.sum())
        accuracy = probe_accuracy(classifier, x[keep], test.labels[keep]) if count else None
        by_size[bucket] = (accuracy, count)
    return ProbeResult(x.shape[1], probe_accuracy(classifier, x, test.labels), by_size)


def probe(
    cfg: CfgNode, weights: str, train_dataset: str, test_dataset: str, max_images: Sequence[int]
) -> Dict[str, ProbeResult]:
    """Fit a probe per feature on ``train_dataset``'s boxes, test it on ``test_dataset``'s.

    ``max_images``: how many images of each (train, test) to pool the boxes of; ``weights``: the
    trained detector's checkpoint ("" for its initialisation). Returns {feature name: result},
    the image first, then the bottom-up features, then the neck outputs.
    """
    model = build_model(cfg).eval()
    if weights:
        Checkpointer(model).load(weights)
    train = box_features(model, cfg, train_dataset, max_images[0])
    test = box_features(model, cfg, test_dataset, max_images[1])
    num_classes = len(MetadataCatalog.get(train_dataset).thing_classes)
    results = {}
    for name, x in train.features.items():
        classifier = fit_probe(x, train.labels, num_classes)
        results[name] = _result(classifier, name, test)
    return results
