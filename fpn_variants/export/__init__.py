"""Export of fpn_variants backbones and of the Detectron2 detectors built on them.

Three routes, for a backbone (bottom-up network + neck) and for a detector (Faster R-CNN, Mask
R-CNN, RetinaNet):

- TorchScript scripting: :func:`script_backbone`, :func:`script_detector` (Detectron2's
  ``scripting_with_instances``);
- TorchScript tracing: :func:`trace_backbone`, :func:`trace_detector` (Detectron2's
  ``TracingAdapter`` flattens the detector's inputs and ``Instances`` outputs to tensors);
- ONNX (PyTorch's TorchScript-based exporter, run by onnxruntime): :func:`export_backbone_onnx`,
  :func:`export_detector_onnx`.

:func:`export_model` writes any of them to a folder and returns a function with the eager
calling convention, so that :func:`eager_outputs` and :func:`differences` compare the two.

Detectors are exported without their final post-processing, as in Detectron2's
``tools/deploy/export_model.py``: they return the ``Instances`` of :func:`detector_inference`, at
the resolution of the network input (boxes not rescaled to the original image, Mask R-CNN's
``pred_masks`` as (N, 1, M, M) probabilities, not pasted into the image). Apply
``detectron2.modeling.postprocessing.detector_postprocess`` to them when needed.

Modules, one job each: :mod:`.models` (the copies exported and what a detector export
computes), :mod:`.torchscript`, :mod:`.onnx`, :mod:`.runtime` (onnxruntime), :mod:`.api`
(:func:`export_model`), :mod:`.tolerances` (eager-versus-export checks), :mod:`.images` (inputs).

The necks' spatial ops use shape arithmetic, not Python branches on shapes
(:mod:`fpn_variants.layers.resample`), so one trace or ONNX graph serves every input size.
"""

from .api import EXPORT_METHODS, FORMATS, eager_outputs, export_model
from .images import sample_image, synthetic_image
from .models import detector_inference, scriptable_copy
from .onnx import ONNX_OPSET, export_backbone_onnx, export_detector_onnx
from .runtime import onnx_runner
from .tolerances import (
    TOLERANCES,
    compare_instances,
    differences,
    exceeded_tolerances,
    max_abs_diff,
)
from .torchscript import script_backbone, script_detector, trace_backbone, trace_detector

__all__ = [
    "EXPORT_METHODS",
    "FORMATS",
    "ONNX_OPSET",
    "TOLERANCES",
    "compare_instances",
    "detector_inference",
    "differences",
    "eager_outputs",
    "export_backbone_onnx",
    "export_detector_onnx",
    "export_model",
    "exceeded_tolerances",
    "max_abs_diff",
    "onnx_runner",
    "sample_image",
    "script_backbone",
    "script_detector",
    "scriptable_copy",
    "synthetic_image",
    "trace_backbone",
    "trace_detector",
]
