#!/usr/bin/env python
"""Compare necks side by side on one recipe: params, FLOPs, latency, memory and COCO AP.

Examples::

    # Faster R-CNN with the four necks on the built-in synthetic data (CPU), 2 seeds trained at
    # once on 2 cores (one thread each)
    python tools/compare.py --detectors faster_rcnn --necks fpn panet bifpn nasfpn --seeds 1 2 \\
        --jobs 2

    # costs only (no training), all three detectors
    python tools/compare.py --detectors faster_rcnn retinanet mask_rcnn --no-train

    # any config override applies to every run, e.g. a longer schedule
    python tools/compare.py --out output/compare_long --seeds 1 2 3 SOLVER.MAX_ITER 1000

    # your own COCO-format data, registered by path (as tools/train_net.py)
    python tools/compare.py --dataset-train my_train train.json train/ \\
        --dataset-test my_val val.json val/ --out output/compare_mine

Each run (a neck, a detector and a seed) is `tools/train_net.py` in its own fresh process, so its
weights and AP are those of the command it records, bit for bit. Each finished cell cost and run
is saved in OUT/cells/ at once: rerunning the same command after an interruption skips what is
done and resumes the interrupted run from its last checkpoint. Reports: OUT/table.md (mean ± std
over seeds, differences to FPN with 95% confidence intervals), OUT/results.csv (one row per run),
OUT/results.json (one row per cell), OUT/ap_vs_gflops.png, OUT/ap_by_size.png; each run's logs,
TensorBoard events and checkpoints in OUT/runs/<cell>/seed<seed>/.
"""

import argparse

import torch

from fpn_variants.compare import DETECTORS, NECKS, PAPER_NECKS, compare
from fpn_variants.engine import add_dataset_arguments


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detectors", nargs="+", default=["faster_rcnn"], choices=DETECTORS)
    parser.add_argument("--necks", nargs="+", default=list(PAPER_NECKS), choices=NECKS)
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="seeds of each cell, one run each (default: the configs' SEED, one run)",
    )
    parser.add_argument("--config-dir", default="configs/Synthetic")
    parser.add_argument("--out", default="output/compare")
    parser.add_argument("--no-train", action="store_true", help="measure costs only")
    parser.add_argument("--repeats", type=int, default=10, help="latency repeats per cell")
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once, each in its own process"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads of each run (default: this machine's threads / --jobs)",
    )
    add_dataset_arguments(
        parser, "COCO-format data by path for DATASETS.{SPLIT}, as tools/train_net.py"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be at least 1")
    threads = args.threads or max(1, torch.get_num_threads() // args.jobs)
    torch.set_num_threads(threads)
    compare(
        args.detectors,
        args.necks,
        args.out,
        config_dir=args.config_dir,
        opts=args.opts,
        train=not args.no_train,
        repeats=args.repeats,
        seeds=args.seeds,
        datasets={"train": args.dataset_train, "test": args.dataset_test},
        threads=threads,
        jobs=args.jobs,
    )
    with open(f"{args.out}/table.md") as f:
        print(f.read())


if __name__ == "__main__":
    main()
