"""What the exporters start from: eval-mode and scriptable copies of a model, and what a
detector export computes (:func:`detector_inference`)."""

import copy
from typing import Dict, List, Tuple

from detectron2.export import TracingAdapter
from detectron2.modeling import Backbone, GeneralizedRCNN
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, Instances
from torch import Tensor, nn

__all__ = ["detector_inference", "scriptable_copy"]


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


def _instances(image: Tensor, fields: Dict[str, Tensor]) -> Instances:
    """The output dict of a scripted detector as ``Instances`` (as :func:`detector_inference`)."""
    fields = dict(fields)
    fields["pred_boxes"] = Boxes(_box_tensor(fields["pred_boxes"]))
    return Instances((image.shape[-2], image.shape[-1]), **fields)


def _box_tensor(boxes) -> Tensor:
    return boxes.tensor if isinstance(boxes, Boxes) else boxes
