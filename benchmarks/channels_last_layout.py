"""Where a channels-last model (MODEL.CHANNELS_LAST) leaves NHWC: the convolutions whose input is
laid out NCHW, in a training step (forward; and the gradients the backward sends into the
backbone's outputs) of each detector x neck of configs/Synthetic. Every such input costs a layout
copy in the forward, every NCHW gradient one in the backward.

    python benchmarks/channels_last_layout.py [--size 256] [--necks FPN PANet BiFPN NASFPN]

Counts, not timings: the result is the same on a busy machine.
"""

import argparse
import os
from collections import Counter
from typing import Dict, List

import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage
from torch import nn

from fpn_variants.config import load_config
from fpn_variants.precision import use_channels_last

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "Synthetic")


def nchw(x: torch.Tensor) -> bool:
    """A 4-d map with several channels and pixels whose channels are not adjacent in memory."""
    return x.dim() == 4 and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1 and x.stride(1) != 1


def batch(size: int) -> List[Dict]:
    """Two random images with two boxes each (class 1; box-shaped masks)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(2):
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
        targets = Instances((size, size))
        boxes = torch.tensor([[10.0, 20, 120, 90], [60, 50, 230, 250]]) * size / 256
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            mask[y0:y1, x0:x1] = True
        targets.gt_boxes = Boxes(boxes)
        targets.gt_masks = BitMasks(masks)
        targets.gt_classes = torch.tensor([1, 1])
        out.append({"image": image, "height": size, "width": size, "instances": targets})
    return out


def layout_report(config: str, size: int) -> Dict[str, object]:
    """NCHW conv inputs (by module) and NCHW gradients of the backbone outputs in one step."""
    cfg = load_config(os.path.join(CONFIGS, config + ".yaml"), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = use_channels_last(build_model(cfg)).train()
    convs: Counter = Counter()
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_hook(
                lambda m, args, out, name=name: convs.update([name]) if nchw(args[0]) else None
            )
    gradients: List[str] = []

    def watch(module, args, features):
        for level, feature in features.items():
            feature.register_hook(
                lambda g, level=level: gradients.append(level) if nchw(g) else None
            )

    model.backbone.register_forward_hook(watch)
    with EventStorage():
        sum(model(batch(size)).values()).backward()
    return {"nchw_conv_inputs": dict(convs), "nchw_feature_gradients": sorted(set(gradients))}


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detectors", nargs="+", default=["faster_rcnn", "retinanet", "mask_rcnn"])
    parser.add_argument("--necks", nargs="+", default=["FPN", "PANet", "BiFPN", "NASFPN"])
    args = parser.parse_args(argv)
    for detector in args.detectors:
        for neck in args.necks:
            report = layout_report(f"{detector}_R18_{neck}", args.size)
            print(f"{detector} {neck}: {report}")


if __name__ == "__main__":
    main()
