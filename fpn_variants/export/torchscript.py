"""TorchScript exports: scripting and tracing of backbones and detectors."""

from typing import Dict, List, Tuple

import torch
from detectron2.export import TracingAdapter, scripting_with_instances
from detectron2.modeling import Backbone, GeneralizedRCNN
from detectron2.structures import Boxes
from torch import Tensor, nn

from .models import _adapter, _check_detector, _eval_copy, scriptable_copy

__all__ = ["script_backbone", "script_detector", "trace_backbone", "trace_detector"]

# Instances fields a scripted detector may use (Detectron2's tools/deploy/export_model.py).
_SCRIPTED_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


def script_backbone(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of a :func:`scriptable_copy` of ``model``."""
    return torch.jit.script(scriptable_copy(model))


def trace_backbone(model: Backbone, images: Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of a copy of ``model`` in eval mode on ``images``
    (N, 3, H, W); the trace returns the same dict and runs at any input size."""
    model = _eval_copy(model)
    with torch.no_grad():
        return torch.jit.trace(model, (images,), strict=False, check_trace=False)


def trace_detector(
    model: nn.Module, image: Tensor
) -> Tuple[torch.jit.ScriptModule, TracingAdapter]:
    """Trace ``model`` (in eval mode) on ``image`` (3, H, W) through a TracingAdapter.

    Returns the trace, (3, H, W) -> flat tuple of tensors, and the adapter, whose
    ``outputs_schema`` rebuilds the ``Instances`` of :func:`detector_inference` from that tuple.
    """
    adapter = _adapter(_eval_copy(model), image)
    traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
    return traced, adapter


class _ScriptableRCNN(nn.Module):
    """Scripting entry point of a GeneralizedRCNN: images -> per-image dicts of fields."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: List[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


class _ScriptableDenseDetector(_ScriptableRCNN):
    """Scripting entry point of a DenseDetector, whose scripted forward skips post-processing."""

    def forward(self, inputs: List[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        return [i.get_fields() for i in self.model(inputs)]


def script_detector(model: nn.Module) -> torch.jit.ScriptModule:
    """Script ``model`` (in eval mode) with Detectron2's ``scripting_with_instances``.

    The scripted module maps ``[{"image": (3, H, W)}, ...]`` to a list of dicts with the fields
    of :func:`detector_inference` ("pred_boxes" as a ``Boxes``, "scores", "pred_classes",
    "pred_masks").
    """
    _check_detector(model)
    entry = _ScriptableRCNN if isinstance(model, GeneralizedRCNN) else _ScriptableDenseDetector
    adapter = entry(scriptable_copy(model)).eval()
    return scripting_with_instances(adapter, _SCRIPTED_FIELDS)
