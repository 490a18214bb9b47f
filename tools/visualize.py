#!/usr/bin/env python
"""Pictures of the necks and the data, as PNG files.

# per-level feature maps of one validation image, one row per neck (weights of a comparison
# run are used when OUT/runs/<cell>/seed<k>/model_final.pth exists, lowest seed first, else the
# untrained init)
python tools/visualize.py features --necks fpn panet bifpn nasfpn --runs output/compare

# the same validation images with each neck's predicted boxes (class, score) over the ground
# truth, one column per neck, from the trained runs of a comparison (lowest seed) ...
python tools/visualize.py predictions --necks fpn panet bifpn nasfpn --runs output/compare
# ... or from any models: --model LABEL CONFIG_FILE WEIGHTS, once per column
python tools/visualize.py predictions --num-images 4 \
    --model FPN configs/Synthetic/faster_rcnn_R18_FPN.yaml output/fpn/model_final.pth \
    --model BiFPN configs/Synthetic/faster_rcnn_R18_BiFPN.yaml output/bifpn/model_final.pth

# which level the ROI heads' poolers assign each ground-truth box to, under the config's rule
# (MODEL.ROI_HEADS.CANONICAL_BOX_SIZE / CANONICAL_LEVEL)
python tools/visualize.py scales --dataset synthetic_multiscale_train
"""

import argparse
import glob
import os

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    DETECTORS,
    NECKS,
    PAPER_NECKS,
    Ledger,
    Recipe,
    cells_from_template,
)
from fpn_variants.config import load_config
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.visualize import (
    box_levels,
    feature_energy,
    plot_feature_maps,
    plot_scale_histogram,
    pooler_levels,
    render_predictions_grid,
    test_resize_scale,
)


def _cells(args: argparse.Namespace, necks):
    """The comparison cells of ``necks`` with their configs (OUTPUT_DIR under ``--runs``)."""
    cells = cells_from_template(args.config_template, [args.detector], necks)
    return [(cell, Recipe.make(args.opts).config(cell, args.runs)) for cell in cells]


def _run_weights(args: argparse.Namespace, cell_name: str) -> str:
    """The final weights of the lowest seed of a comparison's cell, or "" if none finished."""
    pattern = os.path.join(Ledger(args.runs).run_dir(cell_name, "*"), "model_final.pth")
    found = sorted(glob.glob(pattern))
    return found[0] if found else ""


def features(args: argparse.Namespace) -> None:
    maps = {}
    for cell, cfg in _cells(args, args.necks):
        weights = _run_weights(args, cell.name)
        label = cell.label + ("" if weights else " (untrained)")
        maps[label] = feature_energy(cfg, weights)
    plot_feature_maps(maps, args.output)
    print(f"wrote {args.output}")


def predictions(args: argparse.Namespace) -> None:
    columns = []
    for label, config_file, weights in args.model or []:
        columns.append((label, load_config(config_file, [*args.opts, "MODEL.WEIGHTS", weights])))
    for cell, cfg in [] if args.model else _cells(args, args.necks):
        weights = _run_weights(args, cell.name)
        if not weights:
            raise SystemExit(
                f"no trained run of {cell.name} under {args.runs}/runs: "
                "train it with tools/compare.py, or give --model LABEL CONFIG_FILE WEIGHTS"
            )
        cfg.defrost()
        cfg.MODEL.WEIGHTS = weights
        columns.append((cell.label, cfg))
    dataset = args.dataset or columns[0][1].DATASETS.TEST[0]
    counts = render_predictions_grid(
        columns, dataset, args.num_images, args.output, args.score_threshold
    )
    for (label, _), drawn in zip(columns, counts):
        print(f"{label}: {sum(drawn)} boxes of score >= {args.score_threshold:g} drawn")
    print(f"wrote {args.output}")


def scales(args: argparse.Namespace) -> None:
    (cell,) = cells_from_template(args.config_template, [args.detector], ["fpn"])
    cfg = Recipe.make(args.opts).config(cell, "output")
    levels = pooler_levels(cfg)
    scale = test_resize_scale(cfg, args.dataset)
    rule = cfg.MODEL.ROI_HEADS
    result = box_levels(
        args.dataset,
        levels[0],
        levels[-1],
        rule.CANONICAL_BOX_SIZE,
        rule.CANONICAL_LEVEL,
        scale=scale,
    )
    counts = {f"P{k}": int((result["levels"] == k).sum()) for k in levels}
    title = f"{args.dataset}: {len(result['levels'])} boxes, images resized x{scale:.2f}"
    plot_scale_histogram(result, args.output, title, levels)
    print(f"boxes per level: {counts}; wrote {args.output}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    feat = sub.add_parser("features", help="per-level feature maps for each neck")
    feat.add_argument("--necks", nargs="+", default=list(PAPER_NECKS), choices=NECKS)
    feat.add_argument("--runs", default="output/compare", help="a tools/compare.py output folder")
    feat.add_argument("--output", default="output/pictures/feature_maps.png")
    feat.set_defaults(run=features)
    pred = sub.add_parser("predictions", help="each model's detections on the same images")
    pred.add_argument("--necks", nargs="+", default=list(PAPER_NECKS), choices=NECKS)
    pred.add_argument("--runs", default="output/compare", help="a tools/compare.py output folder")
    pred.add_argument(
        "--model",
        nargs=3,
        action="append",
        metavar=("LABEL", "CONFIG_FILE", "WEIGHTS"),
        help="a column from any trained model (repeatable; replaces --necks/--runs)",
    )
    pred.add_argument("--dataset", default="", help="default: the first model's DATASETS.TEST")
    pred.add_argument("--num-images", type=int, default=4)
    pred.add_argument("--score-threshold", type=float, default=0.5)
    pred.add_argument("--output", default="output/pictures/predictions.png")
    pred.set_defaults(run=predictions)
    scale = sub.add_parser("scales", help="scale-assignment histogram of a dataset")
    scale.add_argument("--dataset", default="synthetic_multiscale_train")
    scale.add_argument("--output", default="output/pictures/scale_assignment.png")
    scale.set_defaults(run=scales)
    for p in (feat, pred, scale):
        p.add_argument("--detector", default="faster_rcnn", choices=DETECTORS)
        p.add_argument("--config-template", default=DEFAULT_TEMPLATE, help="as tools/compare.py")
        p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    quiet_upstream_warnings()
    args.run(args)


if __name__ == "__main__":
    main()
