#!/usr/bin/env python
"""Pictures of the necks and the data, as PNG files.

# per-level feature maps of one validation image, one row per neck (weights of a comparison
# run are used when OUT/runs/<cell>/seed<k>/model_final.pth exists, lowest seed first, else the
# untrained init)
python tools/visualize.py features --necks fpn panet bifpn nasfpn --runs output/compare

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
from fpn_variants.visualize import (
    box_levels,
    feature_energy,
    plot_feature_maps,
    plot_scale_histogram,
    pooler_levels,
    test_resize_scale,
)


def features(args: argparse.Namespace) -> None:
    maps = {}
    for cell in cells_from_template(args.config_template, [args.detector], args.necks):
        cfg = Recipe.make(args.opts).config(cell, args.runs)
        pattern = os.path.join(Ledger(args.runs).run_dir(cell.name, "*"), "model_final.pth")
        found = sorted(glob.glob(pattern))
        weights = found[0] if found else ""
        label = cell.label + ("" if weights else " (untrained)")
        maps[label] = feature_energy(cfg, weights)
    plot_feature_maps(maps, args.output)
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
    scale = sub.add_parser("scales", help="scale-assignment histogram of a dataset")
    scale.add_argument("--dataset", default="synthetic_multiscale_train")
    scale.add_argument("--output", default="output/pictures/scale_assignment.png")
    scale.set_defaults(run=scales)
    for p in (feat, scale):
        p.add_argument("--detector", default="faster_rcnn", choices=DETECTORS)
        p.add_argument("--config-template", default=DEFAULT_TEMPLATE, help="as tools/compare.py")
        p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
