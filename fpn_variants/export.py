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

The necks' spatial ops use shape arithmetic, not Python branches on shapes
(:mod:`fpn_variants.layers.resample`), so one trace or ONNX graph serves every input size.
"""

import copy
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from detectron2.export import TracingAdapter, dump_torchscript_IR, scripting_with_instances
from detectron2.modeling import Backbone, GeneralizedRCNN
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

from .optimize import optimize_for_inference

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

logger = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx")
EXPORT_METHODS = ("tracing", "scripting")

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

# ONNX opset of the exports: 16 is the first with ROIAlign "half_pixel" (Detectron2's aligned
# ROIAlign); 17 is what onnxruntime >= 1.14 runs everywhere.
ONNX_OPSET = 17

# Instances fields a scripted detector may use (Detectron2's tools/deploy/export_model.py).
_SCRIPTED_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


# --------------------------------------------------------------------------------------------
# Copies the exporters accept.
def scriptable_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that ``torch.jit.script`` accepts.

    Detectron2's ResNet keeps its stages in a plain Python list, which TorchScript (torch >= 2.x)
    no longer converts; the copy holds them in an ``nn.ModuleList`` instead. Parameters are copied,
    so the copy computes exactly what ``model`` computes.
    """
    model = copy.deepcopy(model)
    for module in model.modules():
        stages = module.__dict__.get("stages")
        if isinstance(stages, list) and all(isinstance(s, nn.Module) for s in stages):
            del module.__dict__["stages"]
            module.stages = nn.ModuleList(stages)
    return model


def _eval_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode (exporting leaves the caller's model untouched)."""
    return copy.deepcopy(model).eval()


# --------------------------------------------------------------------------------------------
# Backbones: images (N, 3, H, W) -> {"p<l>": (N, C, ceil(H / 2**l), ceil(W / 2**l))}.
class _TupleOutputs(nn.Module):
    """A backbone with its outputs as a tuple in ``output_shape()`` order (for ONNX)."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        self.backbone = backbone
        self.names = list(backbone.output_shape())

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        out = self.backbone(images)
        return tuple(out[name] for name in self.names)


def script_backbone(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of a :func:`scriptable_copy` of ``model``."""
    return torch.jit.script(scriptable_copy(model))


def trace_backbone(model: Backbone, images: Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of a copy of ``model`` in eval mode on ``images``
    (N, 3, H, W); the trace returns the same dict and runs at any input size."""
    model = _eval_copy(model)
    with torch.no_grad():
        return torch.jit.trace(model, (images,), strict=False, check_trace=False)


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


# --------------------------------------------------------------------------------------------
# Detectors: one image (3, H, W), float, in cfg.INPUT.FORMAT and value range, already resized.
def detector_inference(model: nn.Module, inputs: List[Dict[str, Tensor]]) -> List[Instances]:
    """What every detector export computes: per-image ``Instances`` at the network-input
    resolution, without ``detector_postprocess`` (no rescaling, clipping or mask pasting).

    Faster / Mask R-CNN (``GeneralizedRCNN``): ``pred_boxes``, ``scores``, ``pred_classes``
    (+ ``pred_masks`` (N, 1, M, M)). RetinaNet (``DenseDetector``): the same without masks.
    """
    _check_detector(model)
    if isinstance(model, GeneralizedRCNN):
        return model.inference(inputs, do_postprocess=False)
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    return model.forward_inference(images, features, model.head(features))


def _check_detector(model: nn.Module) -> None:
    if not isinstance(model, (GeneralizedRCNN, DenseDetector)):
        raise TypeError(
            "export supports GeneralizedRCNN (Faster / Mask R-CNN) and DenseDetector (RetinaNet) "
            f"models, got {type(model).__name__}"
        )


def _adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    """Detectron2's TracingAdapter: (3, H, W) image -> flat tuple of the Instances' tensors."""

    def inference(model, image):
        return detector_inference(model, [{"image": image}])[0]

    return TracingAdapter(model, image, inference).eval()


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


# --------------------------------------------------------------------------------------------
# One entry point: write an export, get it back as a function with the eager calling convention.
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
        path = os.path.join(output_dir, "model.onnx")
        if is_backbone:
            names = export_backbone_onnx(model, sample, path, dynamic=dynamic)
            run = onnx_runner(path)
            return lambda images: dict(zip(names, run(images)))
        adapter = export_detector_onnx(model, sample, path, dynamic=dynamic)
        run = onnx_runner(path)
        logger.info(f"ONNX outputs: {adapter.outputs_schema}")
        return lambda image: adapter.outputs_schema(tuple(run(image)))

    if method == "scripting":
        exported = script_backbone(model) if is_backbone else script_detector(model)
        adapter = None
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


def _instances(image: Tensor, fields: Dict[str, Tensor]) -> Instances:
    """The output dict of a scripted detector as ``Instances`` (as :func:`detector_inference`)."""
    fields = dict(fields)
    fields["pred_boxes"] = Boxes(_box_tensor(fields["pred_boxes"]))
    return Instances((image.shape[-2], image.shape[-1]), **fields)


def eager_outputs(model: nn.Module, sample: Tensor) -> Union[Instances, Dict[str, Tensor]]:
    """What :func:`export_model`'s function computes, by ``model`` itself (in eval mode)."""
    model = model.eval()
    with torch.no_grad():
        if isinstance(model, Backbone):
            return model(sample)
        return detector_inference(model, [{"image": sample}])[0]


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


# --------------------------------------------------------------------------------------------
# Running and comparing.
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


def onnx_runner(path: str) -> Callable[..., List[Tensor]]:
    """An onnxruntime (CPU) session of the ONNX file ``path``, as a function: input tensors ->
    list of output tensors."""
    # Imported here: onnxruntime is an optional (dev) dependency, needed for ONNX files only.
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: shape-merge warnings of dynamic graphs are noise
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: Tensor) -> List[Tensor]:
        feeds = {n: x.detach().cpu().numpy() for n, x in zip(names, inputs)}
        return [torch.from_numpy(np.asarray(y)) for y in session.run(None, feeds)]

    return run


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


def _box_tensor(boxes) -> Tensor:
    return boxes.tensor if isinstance(boxes, Boxes) else boxes


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
