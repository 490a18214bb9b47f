#!/usr/bin/env python
"""Export a detector with an fpn_variants neck (or its backbone) to TorchScript or ONNX, then
check the export against eager PyTorch on a sample image (Detectron2's tools/deploy CLI).

Examples::

    # TorchScript by tracing: OUT/model.ts plus Detectron2's IR dumps (model_ts_*.txt)
    python tools/export_model.py --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml \\
        --format torchscript --export-method tracing --output output/export/frcnn_ts \\
        MODEL.WEIGHTS output/synthetic/faster_rcnn_R18_FPN/model_final.pth

    # ONNX (onnxruntime checks it), free input size, on an image of the built-in data (or yours)
    python tools/export_model.py --config-file CONFIG.yaml --format onnx \\
        --sample-image datasets/synthetic_multiscale/val/000000.jpg \\
        --output output/export/onnx MODEL.WEIGHTS model.pth

    # the backbone (bottom-up network + neck) only, by scripting
    python tools/export_model.py --config-file CONFIG.yaml --backbone-only \\
        --format torchscript --export-method scripting --output output/export/backbone

Without ``--sample-image`` a synthetic image of INPUT.MIN_SIZE_TEST pixels is used. The exported
detector returns the raw ``Instances`` at the network-input resolution (see docs/export.md); the
tool prints its largest differences from eager PyTorch and exits with status 1 when one exceeds
``fpn_variants.export.TOLERANCES``.
"""

import argparse
import sys

# first: the package hides the upstream notices that fvcore and detectron2 print when imported
import fpn_variants  # noqa: F401  isort: skip
from detectron2.modeling import build_model
from detectron2.utils.logger import setup_logger

from fpn_variants.checkpoint import Checkpointer
from fpn_variants.config import load_config
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.export import (
    EXPORT_METHODS,
    FORMATS,
    differences,
    eager_outputs,
    exceeded_tolerances,
    export_model,
    sample_image,
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--format", choices=FORMATS, default="torchscript", help="output format")
    parser.add_argument("--export-method", choices=EXPORT_METHODS, default="tracing")
    parser.add_argument("--output", required=True, help="output directory of the exported model")
    parser.add_argument("--sample-image", default=None, help="image to trace and verify with")
    parser.add_argument(
        "--backbone-only", action="store_true", help="export cfg's backbone instead of the model"
    )
    parser.add_argument(
        "--static-shape",
        action="store_true",
        help="ONNX: fix the input size to the sample's (default: free height and width)",
    )
    parser.add_argument(
        "opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ..."
    )
    return parser


def setup_cfg(args):
    return load_config(args.config_file, args.opts)


def main(args) -> int:
    """Export, verify, print the differences; 0 if within tolerances, else 1."""
    logger = setup_logger(name="fpn_variants")
    setup_logger(name="detectron2")
    cfg = setup_cfg(args)
    model = build_model(cfg)
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)  # strict; never unpickles arbitrary objects
    model.eval()
    sample = sample_image(cfg, args.sample_image)
    if args.backbone_only:
        # The backbone's input as the detector feeds it: normalized and padded.
        sample = model.preprocess_image([{"image": sample}]).tensor
        model = model.backbone
    run = export_model(
        model,
        sample,
        args.output,
        fmt=args.format,
        method=args.export_method,
        dynamic=not args.static_shape,
    )
    logger.info(f"Exported {args.format} ({args.export_method}) to {args.output}")
    expected = eager_outputs(model, sample)
    diffs = differences(expected, run(sample))
    what = "features" if args.backbone_only else f"{len(expected)} detections"
    print(
        f"max difference from eager on a {tuple(sample.shape)} sample ({what}): "
        + ", ".join(f"{k}={v:.3g}" for k, v in diffs.items())
    )
    exceeded = exceeded_tolerances(diffs)
    if exceeded:
        print("FAILED: " + ", ".join(exceeded))
        return 1
    return 0


if __name__ == "__main__":
    quiet_upstream_warnings()
    parser = argument_parser()
    args = parser.parse_args()
    if args.format == "onnx" and args.export_method == "scripting":
        parser.error("--format onnx exports by tracing: use --export-method tracing")
    sys.exit(main(args))
