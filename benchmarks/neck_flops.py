"""FLOPs of each paper neck against its bottom-up network, in the papers' setting (the COCO configs:
ResNet-50, an 800 x 1216 image) and in ours (the synthetic configs: ResNet-18, 256 px), with the
neck's FLOPs split by the kind of layer: 1x1 convs (FPN's laterals, other projections, the
pointwise half of BiFPN's separable convs), stride-1 3x3 convs (output and merge convs; BiFPN's
depthwise half), strided convs (extra levels, PANet's bottom-up path) and the rest (the top-down
resampling and merges, pooling, attention), each as a share of the bottom-up network's FLOPs.
No training, no timing: fvcore's count (one multiply-add = one flop, as Detectron2 reports),
batch 1, the image padded as Detectron2 pads it for each neck.

    python benchmarks/neck_flops.py [--out docs/reference/neck_flops.md]
"""

import argparse
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model
from torch import nn

from fpn_variants.analysis import flop_analysis, neck_flop_analysis
from fpn_variants.comparison import DETECTORS, NECKS, PAPER_NECKS
from fpn_variants.config import load_config
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.io import atomic_write_text
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.provenance import command_line, provenance_line

# (name, config template, image height x width before padding)
SETTINGS = (
    ("papers' (COCO, R50)", "configs/COCO/{detector}_R50_{suffix}_1x.yaml", (800, 1216)),
    ("ours (synthetic, R18)", "configs/Synthetic/{detector}_R18_{suffix}.yaml", (256, 256)),
)
PARTS = ("1x1 convs", "3x3 convs", "strided convs", "other")


@dataclass
class NeckFlops:
    """fvcore GFLOPs of one detector's bottom-up network and neck."""

    detector: str
    neck: str
    input_size: Tuple[int, int]
    bottom_up: float
    neck_total: float
    parts: Dict[str, float]


def _part(module: nn.Module) -> Optional[str]:
    if not isinstance(module, nn.Conv2d):
        return None
    if max(module.stride) > 1:
        return "strided convs"
    return "1x1 convs" if max(module.kernel_size) == 1 else "3x3 convs"


def build_backbone(cfg: CfgNode) -> nn.Module:
    """The detector's backbone (bottom-up network and neck), in eval mode."""
    return build_model(cfg).backbone.eval()


def count(config_file: str, detector: str, neck: str, size: Tuple[int, int]) -> NeckFlops:
    """The FLOPs of ``config_file``'s bottom-up network and neck on one padded image."""
    backbone = build_backbone(load_config(config_file, ["MODEL.DEVICE", "cpu"]))
    divisor = max(1, backbone.size_divisibility)
    padded = tuple(-(-side // divisor) * divisor for side in size)
    image = torch.zeros(1, 3, *padded)
    with torch.no_grad():
        features = backbone.bottom_up(image)
    bottom_up = flop_analysis(backbone.bottom_up, (image,))
    analysis = neck_flop_analysis(backbone, features)
    by_module = analysis.by_module()
    parts = dict.fromkeys(PARTS, 0.0)
    for name, module in backbone.named_modules():
        part = _part(module) if not name.startswith("bottom_up") else None
        if part is not None:
            parts[part] += by_module.get(f"neck.{name}", 0) / 1e9
    total = analysis.total() / 1e9
    parts["other"] = total - sum(parts.values())
    return NeckFlops(detector, neck, padded, bottom_up.total() / 1e9, total, parts)


def _percent(part: float, whole: float) -> str:
    share = 100 * part / whole
    return f"{share:.0f}%" if share >= 1 else f"{share:.2f}%"


def render(rows: Dict[str, List[NeckFlops]], command: str) -> str:
    """The tables of ``rows``, under the commit of this code and ``command`` (what wrote them)."""
    lines = [
        provenance_line([command], [git_commit()]),
        "",
        "fvcore GFLOPs (multiply-adds), batch 1, the image padded to each neck's size "
        "divisibility; the neck's FLOPs split by layer kind, each as % of the bottom-up network.",
        "",
    ]
    header = " | ".join(PARTS)
    for setting, items in rows.items():
        lines += [
            f"**{setting}**",
            "",
            f"| detector | neck | input | bottom-up | neck | neck / bottom-up | {header} |",
            "|---|---|---|---|---|---|" + "---|" * len(PARTS),
        ]
        for r in items:
            shares = " | ".join(
                f"{r.parts[p]:.2f} ({_percent(r.parts[p], r.bottom_up)})" for p in PARTS
            )
            lines.append(
                f"| {DETECTORS[r.detector]} | {NECKS[r.neck][0]} | {r.input_size[0]}x"
                f"{r.input_size[1]} | {r.bottom_up:.1f} | {r.neck_total:.1f} | "
                f"{_percent(r.neck_total, r.bottom_up)} | {shares} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> Dict[str, List[NeckFlops]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/reference/neck_flops.md")
    parser.add_argument("--detectors", nargs="+", default=["faster_rcnn", "retinanet"])
    parser.add_argument("--necks", nargs="+", default=list(PAPER_NECKS), choices=list(NECKS))
    args = parser.parse_args(argv)
    quiet_upstream_warnings()
    rows: Dict[str, List[NeckFlops]] = {}
    for setting, template, size in SETTINGS:
        for detector in args.detectors:
            for neck in args.necks:
                path = template.format(detector=detector, suffix=NECKS[neck][1])
                if os.path.isfile(path):
                    rows.setdefault(setting, []).append(count(path, detector, neck, size))
    text = render(rows, command_line("benchmarks/neck_flops.py", argv))
    print(text)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    atomic_write_text(args.out, text)
    return rows


if __name__ == "__main__":
    main()
