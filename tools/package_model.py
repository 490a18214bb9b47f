#!/usr/bin/env python
"""Turn a training output folder into a model zoo release and add it to the manifest.

Examples::

    # release output/synthetic/faster_rcnn_R18_BiFPN as "faster_rcnn_R18_BiFPN" (the name of its
    # config, read from log.txt) under output/model_zoo/, listed in model_zoo/manifest.json
    python tools/package_model.py output/synthetic/faster_rcnn_R18_BiFPN

    # with numbers measured elsewhere, and the URL the release folder will be uploaded to
    python tools/package_model.py output/coco/retinanet_R50_FPN --name retinanet_R50_FPN_1x \\
        --gflops 205.3 --latency-ms 812 --base-url https://example.org/fpn_variants

    # evaluation results from a separate --eval-only run
    python tools/package_model.py output/x --metrics output/x_eval/results.json --overwrite

The release holds the weights only (no optimizer state), the resolved config with MODEL.WEIGHTS
"", metrics.json and release.json (versions, sha256). Re-using a name is an error unless
--overwrite is given; then the old release and manifest entry are replaced atomically. After
packaging, regenerate MODEL_ZOO.md with ``python tools/zoo_table.py``.
"""

import argparse
import json
import logging
import sys
from typing import List, Optional

from fpn_variants import model_zoo


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("output_dir", help="training output folder (config.yaml, model_final.pth)")
    parser.add_argument(
        "--name", help="release name (default: the source config's name, else the folder's)"
    )
    parser.add_argument(
        "--releases-dir",
        default=model_zoo.DEFAULT_RELEASES_DIR,
        help="where release folders go (default: %(default)s; git-ignored, never commit weights)",
    )
    parser.add_argument(
        "--manifest",
        help=f"manifest to update (default: ${model_zoo.MANIFEST_ENV} or model_zoo/manifest.json)",
    )
    parser.add_argument("--weights", help="checkpoint (default: OUTPUT_DIR/model_final.pth)")
    parser.add_argument("--config-file", help="training config (default: OUTPUT_DIR/config.yaml)")
    parser.add_argument(
        "--source-config",
        help="YAML under configs/ it was trained from (default: read from OUTPUT_DIR/log.txt)",
    )
    parser.add_argument(
        "--metrics",
        metavar="FILE",
        help="JSON {task: {metric: value}} with the COCO results "
        "(default: last evaluation in OUTPUT_DIR/metrics.json)",
    )
    parser.add_argument(
        "--dataset", help="test set whose results to take (default: DATASETS.TEST[0])"
    )
    parser.add_argument("--params", type=int, help="parameter count (default: counted)")
    parser.add_argument("--gflops", type=float, help="GFLOPs per image (fvcore convention)")
    parser.add_argument("--latency-ms", type=float, help="inference latency per image (ms)")
    parser.add_argument(
        "--train-time",
        type=model_zoo.parse_duration,
        help="training time, seconds or H:MM:SS (default: from OUTPUT_DIR/log.txt)",
    )
    parser.add_argument(
        "--hardware", help='training hardware, e.g. "CPU, 2 threads" (default: guessed)'
    )
    parser.add_argument(
        "--base-url", help="URL the release folders are uploaded to (weights URL in the manifest)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing release of the same name"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        entry = model_zoo.package(
            args.output_dir,
            args.name,
            releases_dir=args.releases_dir,
            manifest=args.manifest,
            weights=args.weights,
            config_file=args.config_file,
            source_config=args.source_config,
            metrics_file=args.metrics,
            dataset=args.dataset,
            costs={
                "params": args.params,
                "gflops": args.gflops,
                "latency_ms": args.latency_ms,
                "train_time_s": args.train_time,
            },
            hardware=args.hardware,
            base_url=args.base_url,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
