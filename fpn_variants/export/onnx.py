"""ONNX exports of backbones and detectors (PyTorch's TorchScript-based exporter)."""

import os
from typing import List

import torch
from detectron2.export import TracingAdapter
from detectron2.modeling import Backbone
from torch import Tensor, nn

from .models import _adapter, _eval_copy, _TupleOutputs

__all__ = ["ONNX_OPSET", "export_backbone_onnx", "export_detector_onnx"]

# ONNX opset of the exports: 16 is the first with ROIAlign "half_pixel" (Detectron2's aligned
# ROIAlign); 17 is what onnxruntime >= 1.14 runs everywhere.
ONNX_OPSET = 17


def export_backbone_onnx(
    model: Backbone, images: Tensor, path: str, *, dynamic: bool = True
) -> List[str]:
    """Write ``model`` (in eval mode) as ONNX to ``path`` and return its output names.

    The graph has one input "images" (N, 3, H, W) and one output per level, named as in
    ``output_shape()``. With ``dynamic``, N, H and W are free (any size runs); otherwise the
    graph is fixed to the shape of ``images``.
    """
    wrapper = _TupleOutputs(_eval_copy(model)).eval()
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}}
        dynamic_axes.update(
            {n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in wrapper.names}
        )
    _onnx_export(wrapper, (images,), path, ["images"], wrapper.names, dynamic_axes)
    return wrapper.names


def export_detector_onnx(
    model: nn.Module, image: Tensor, path: str, *, dynamic: bool = True
) -> TracingAdapter:
    """Write ``model`` (in eval mode), traced on ``image`` (3, H, W), as ONNX to ``path``.

    The graph has one input "image" (3, H, W), free H and W with ``dynamic``, and returns the
    flattened ``Instances``; the returned adapter's ``outputs_schema`` rebuilds them.
    """
    adapter = _adapter(_eval_copy(model), image)
    with torch.no_grad():
        flat = adapter(image)  # records outputs_schema
    names = [f"output{i}" for i in range(len(flat))]
    dynamic_axes = {"image": {1: "height", 2: "width"}} if dynamic else None
    if dynamic:
        # Every output has a data-dependent length (the number of detections).
        dynamic_axes.update(
            {n: {d: f"{n}_dim{d}" for d in range(t.dim())} for n, t in zip(names, flat)}
        )
    _onnx_export(adapter, (image,), path, ["image"], names, dynamic_axes)
    return adapter


def _onnx_export(model, args, path, input_names, output_names, dynamic_axes) -> None:
    # The TorchScript-based exporter (dynamo=False): Detectron2's TracingAdapter is built for it,
    # and torch.export (dynamo=True) cannot capture the detectors' data-dependent shapes.
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            model,
            args,
            path,
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
