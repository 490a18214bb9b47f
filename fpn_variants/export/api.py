"""One entry point: write an export, get it back as a function with the eager calling
convention (:func:`export_model`), and the eager outputs to compare it with."""

import logging
import os
from typing import Any, Callable, Dict, Union

import torch
from detectron2.export import dump_torchscript_IR
from detectron2.modeling import Backbone
from detectron2.structures import Instances
from torch import Tensor, nn

from ..optimize import optimize_for_inference
from .models import _check_detector, _instances, detector_inference
from .onnx import export_backbone_onnx, export_detector_onnx
from .runtime import onnx_runner
from .torchscript import script_backbone, script_detector, trace_backbone, trace_detector

__all__ = ["EXPORT_METHODS", "FORMATS", "eager_outputs", "export_model"]

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
EXPORT_METHODS = ("tracing", "scripting")


def export_model(
    model: nn.Module,
    sample: Tensor,
    output_dir: str,
    *,
    fmt: str = "torchscript",
    method: str = "tracing",
    dynamic: bool = True,
) -> Callable[[Tensor], Any]:
    """Export ``model`` (in eval mode) to ``output_dir`` and return the export as a function.

    What is exported is :func:`~fpn_variants.optimize.optimize_for_inference` of ``model``, which
    computes the plain model's outputs to float32 rounding; ``model`` itself is left unchanged.

    Args:
        model (nn.Module): a detector (GeneralizedRCNN or RetinaNet) or a :class:`Backbone`.
        sample (Tensor): a detector's image (3, H, W), float, in ``cfg.INPUT.FORMAT``; a
            backbone's normalized images (N, 3, H, W).
        output_dir (str): gets "model.ts" and Detectron2's IR dumps ("torchscript"), or
            "model.onnx" ("onnx").
        fmt (str): one of :data:`FORMATS`.
        method (str): one of :data:`EXPORT_METHODS`; "scripting" only with "torchscript".
        dynamic (bool): ONNX only: free input height and width (else fixed to ``sample``).

    Returns:
        A function running the *saved* file: image (3, H, W) -> ``Instances`` of
        :func:`detector_inference` (detectors), or images -> {"p<l>": features} (backbones).
    """
    if fmt not in FORMATS or method not in EXPORT_METHODS:
        raise ValueError(
            f"format={fmt!r}, export method={method!r}: choose a format in {list(FORMATS)} and "
            f"a method in {list(EXPORT_METHODS)}"
        )
    if fmt == "onnx" and method == "scripting":
        raise ValueError("ONNX export traces the model: use method='tracing'")
    is_backbone = isinstance(model, Backbone)
    if not is_backbone:
        _check_detector(model)
    os.makedirs(output_dir, exist_ok=True)
    model = optimize_for_inference(model.eval())  # a copy: BN folded, NHWC necks
    if fmt == "onnx":
        return _export_onnx(model, sample, output_dir, is_backbone, dynamic)
    return _export_torchscript(model, sample, output_dir, is_backbone, method)


def _export_onnx(
    model: nn.Module, sample: Tensor, output_dir: str, is_backbone: bool, dynamic: bool
) -> Callable[[Tensor], Any]:
    """Write ``output_dir/model.onnx``; return a function running it (as :func:`export_model`)."""
    path = os.path.join(output_dir, "model.onnx")
    if is_backbone:
        names = export_backbone_onnx(model, sample, path, dynamic=dynamic)
        run = onnx_runner(path)
        return lambda images: dict(zip(names, run(images)))
    adapter = export_detector_onnx(model, sample, path, dynamic=dynamic)
    run = onnx_runner(path)
    logger.info(f"ONNX outputs: {adapter.outputs_schema}")
    return lambda image: adapter.outputs_schema(tuple(run(image)))


def _export_torchscript(
    model: nn.Module, sample: Tensor, output_dir: str, is_backbone: bool, method: str
) -> Callable[[Tensor], Any]:
    """Write ``output_dir/model.ts`` (and Detectron2's IR dumps) by tracing or scripting; return
    a function running the saved file (as :func:`export_model`)."""
    adapter = None
    if method == "scripting":
        exported = script_backbone(model) if is_backbone else script_detector(model)
    elif is_backbone:
        exported = trace_backbone(model, sample)
    else:
        exported, adapter = trace_detector(model, sample)
    path = os.path.join(output_dir, "model.ts")
    torch.jit.save(exported, path)
    dump_torchscript_IR(exported, output_dir)
    loaded = torch.jit.load(path)
    if is_backbone:
        return torch.no_grad()(loaded)
    if adapter is not None:
        logger.info(f"TorchScript outputs: {adapter.outputs_schema}")
        return torch.no_grad()(lambda image: adapter.outputs_schema(loaded(image)))
    return torch.no_grad()(lambda image: _instances(image, loaded([{"image": image}])[0]))


def eager_outputs(model: nn.Module, sample: Tensor) -> Union[Instances, Dict[str, Tensor]]:
    """What :func:`export_model`'s function computes, by ``model`` itself (in eval mode)."""
    model = model.eval()
    with torch.no_grad():
        if isinstance(model, Backbone):
            return model(sample)
        return detector_inference(model, [{"image": sample}])[0]
