#!/usr/bin/env python
"""Run a trained detector on your images and save them with its predictions drawn (Detectron2's
demo/demo.py interface, without the webcam and video modes).

Examples::

    # a model you trained (tools/train_net.py) on the validation images of the built-in data
    python tools/demo.py --config-file configs/Synthetic/faster_rcnn_R18_FPN.yaml \\
        --input datasets/synthetic_multiscale/val/*.jpg --output output/demo \\
        --opts MODEL.WEIGHTS output/synthetic/faster_rcnn_R18_FPN/model_final.pth

    # a model-zoo release by name (its weights: `make zoo`, or downloaded from its URL)
    python tools/demo.py --model-zoo faster_rcnn_R18_BiFPN --input my_images/ --output out/

``--input`` takes files, glob patterns and folders (their .jpg/.jpeg/.png/.bmp files).
``--output`` is a file for a single input image (its extension sets the format), otherwise a
folder that receives one picture per input under the input's file name.
"""

import argparse
import os
import sys
import time
from typing import List, Optional

# first: the package hides the upstream notices that fvcore and detectron2 print when imported
import fpn_variants  # noqa: F401  isort: skip
from detectron2.data import MetadataCatalog
from PIL import Image

from fpn_variants import model_zoo
from fpn_variants.config import load_config
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.predict import (
    IMAGE_EXTENSIONS,
    Predictor,
    draw_predictions,
    image_paths,
    read_image_file,
    to_rgb,
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--config-file", metavar="FILE", help="path to config file")
    model.add_argument("--model-zoo", metavar="NAME", help="a model-zoo name (list_models())")
    parser.add_argument("--input", nargs="+", required=True, help="image files, globs or folders")
    parser.add_argument("--output", default="output/demo", help="a file (one input) or folder")
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="lowest score of a box drawn"
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ..."
    )
    return parser


def output_paths(output: str, inputs: List[str]) -> List[str]:
    """Where each picture is saved: ``output`` itself for one input when it names an image
    file, else ``output/<input file name>``."""
    if output.lower().endswith(IMAGE_EXTENSIONS):
        if len(inputs) > 1:
            raise ValueError(f"{len(inputs)} input images, one output file {output}: give a folder")
        return [output]
    names = [os.path.basename(path) for path in inputs]
    if len(set(names)) < len(names):
        raise ValueError("input images share file names; give them in separate runs")
    return [os.path.join(output, name) for name in names]


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        if args.model_zoo:
            cfg = model_zoo.get_config(args.model_zoo, trained=True)
            cfg.merge_from_list(args.opts)
        else:
            cfg = load_config(args.config_file, args.opts)
        inputs = image_paths(args.input)
        outputs = output_paths(args.output, inputs)
        predictor = Predictor(cfg)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    metadata = MetadataCatalog.get(cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else "__unused")
    for source, target in zip(inputs, outputs):
        try:
            image = read_image_file(source, cfg.INPUT.FORMAT)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        instances = predictor(image)
        elapsed = time.perf_counter() - start
        rgb = to_rgb(image, cfg.INPUT.FORMAT)
        picture, drawn = draw_predictions(rgb, instances, metadata, args.confidence_threshold)
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        Image.fromarray(picture).save(target)
        print(f"{source}: {len(instances)} detections, {drawn} drawn, {elapsed:.2f} s -> {target}")
    return 0


if __name__ == "__main__":
    quiet_upstream_warnings()
    sys.exit(main())
