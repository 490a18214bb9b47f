"""How far an export may be from eager PyTorch: the tolerances and the differences they bound."""

from typing import Dict, List, Sequence, Union

import torch
from detectron2.structures import Instances
from torch import Tensor

from .models import _box_tensor

__all__ = [
    "TOLERANCES",
    "compare_instances",
    "differences",
    "exceeded_tolerances",
    "max_abs_diff",
]

# Largest differences accepted between an export and eager PyTorch on the same input (float32,
# CPU). "features" (backbone outputs) and "boxes" (box coordinates, in pixels) are relative to
# the largest |eager value| (at least 1): untrained heads regress boxes far outside the image,
# where float32 spacing grows with the coordinate. "scores" and "masks" (mask probabilities) are
# absolute. Detections must pair up one to one ("count" and "unmatched" 0). TorchScript
# reproduces eager exactly on the CPU; onnxruntime's kernels differ slightly (largest measured on
# the test models, all necks and detectors: features 1.9e-6, boxes 3.3e-6 (1e-3 px at 400 px),
# scores 2.3e-6, masks 1.3e-6).
TOLERANCES = {
    "features": 1e-4,
    "boxes": 2e-5,
    "scores": 1e-4,
    "masks": 1e-4,
    "count": 0.0,
    "unmatched": 0.0,
}


def differences(
    expected: Union[Instances, Dict[str, Tensor]], actual: Union[Instances, Dict[str, Tensor]]
) -> Dict[str, float]:
    """Largest differences between eager and exported outputs, with the keys of
    :data:`TOLERANCES`: :func:`compare_instances` for detections, "features" for backbones."""
    if isinstance(expected, Instances):
        return compare_instances(expected, actual)
    if list(expected) != list(actual):
        return {"features": float("inf")}
    scale = max([1.0] + [v.abs().max().item() for v in expected.values() if v.numel()])
    return {"features": max_abs_diff(list(expected.values()), list(actual.values())) / scale}


def exceeded_tolerances(diffs: Dict[str, float]) -> List[str]:
    """The entries of ``diffs`` above :data:`TOLERANCES`, as "key=value > tolerance" strings."""
    return [
        f"{key}={value:.3g} > {TOLERANCES[key]:g}"
        for key, value in diffs.items()
        if not value <= TOLERANCES[key]
    ]


def max_abs_diff(expected: Sequence[Tensor], actual: Sequence[Tensor]) -> float:
    """Largest absolute difference between two sequences of same-shape tensors (inf on any
    count or shape mismatch)."""
    if len(expected) != len(actual):
        return float("inf")
    diff = 0.0
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            return float("inf")
        if e.numel():
            diff = max(diff, (e.double() - a.double()).abs().max().item())
    return diff


def compare_instances(expected: Instances, actual: Instances) -> Dict[str, float]:
    """Differences between two detection sets, detections paired up regardless of order.

    Exported runtimes may order near-equal scores differently, so each detection of ``actual``
    (by decreasing score) is paired with the unpaired detection of ``expected`` of the same class
    with the nearest box. Returns the count difference ("count", plus the number of detections
    left unpaired as "unmatched") and the largest differences of the pairs: "boxes" (relative
    to the largest |coordinate| of ``expected``, at least 1 pixel), "scores" and, with masks,
    "masks" (mask probabilities), as :data:`TOLERANCES` reads them.
    """
    n_exp, n_act = len(expected), len(actual)
    result = {"count": float(abs(n_exp - n_act)), "unmatched": 0.0, "boxes": 0.0, "scores": 0.0}
    has_masks = expected.has("pred_masks")
    if has_masks:
        result["masks"] = 0.0
    if n_act == 0:
        result["unmatched"] = float(n_exp)
        return result
    exp_boxes = _box_tensor(expected.pred_boxes).double()
    act_boxes = _box_tensor(actual.pred_boxes).double()
    free = torch.ones(n_exp, dtype=torch.bool)
    for i in torch.argsort(actual.scores, descending=True).tolist():
        candidates = free & (expected.pred_classes == actual.pred_classes[i])
        if not candidates.any():
            result["unmatched"] += 1
            continue
        dist = (exp_boxes - act_boxes[i]).abs().amax(dim=1)
        dist = dist + (expected.scores.double() - float(actual.scores[i])).abs()
        j = int(torch.where(candidates, dist, torch.full_like(dist, float("inf"))).argmin())
        free[j] = False
        result["boxes"] = max(result["boxes"], (exp_boxes[j] - act_boxes[i]).abs().max().item())
        score_diff = abs(float(expected.scores[j]) - float(actual.scores[i]))
        result["scores"] = max(result["scores"], score_diff)
        if has_masks:
            mask_diff = (expected.pred_masks[j].double() - actual.pred_masks[i].double()).abs()
            result["masks"] = max(result["masks"], mask_diff.max().item())
    result["boxes"] /= max(1.0, exp_boxes.abs().max().item() if n_exp else 1.0)
    return result
