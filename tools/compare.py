#!/usr/bin/env python
"""Compare necks side by side on one recipe: params, FLOPs, latency, memory and COCO AP.

Examples::

    # the demo: Faster R-CNN with the four necks on the built-in synthetic data (CPU)
    python tools/compare.py --detectors faster_rcnn --necks fpn panet bifpn nasfpn

    # costs only (no training), all three detectors
    python tools/compare.py --detectors faster_rcnn retinanet mask_rcnn --no-train

    # any config override applies to every cell, e.g. a longer schedule
    python tools/compare.py --out output/compare_long SOLVER.MAX_ITER 1000

Each finished cell is saved in OUT/cells/ at once: rerunning the same command after an
interruption skips finished cells and resumes the interrupted one from its last checkpoint.
Reports: OUT/table.md, OUT/results.csv, OUT/results.json, OUT/ap_vs_gflops.png,
OUT/ap_by_size.png; TensorBoard logs in OUT/runs/<cell>/.
"""

import argparse

import torch

from fpn_variants.compare import DETECTORS, NECKS, compare


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detectors", nargs="+", default=["faster_rcnn"], choices=DETECTORS)
    parser.add_argument("--necks", nargs="+", default=list(NECKS), choices=NECKS)
    parser.add_argument("--config-dir", default="configs/Synthetic")
    parser.add_argument("--out", default="output/compare")
    parser.add_argument("--no-train", action="store_true", help="measure costs only")
    parser.add_argument("--repeats", type=int, default=10, help="latency repeats per cell")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compare(
        args.detectors,
        args.necks,
        args.out,
        config_dir=args.config_dir,
        opts=args.opts,
        train=not args.no_train,
        repeats=args.repeats,
    )
    with open(f"{args.out}/table.md") as f:
        print(f.read())


if __name__ == "__main__":
    main()
