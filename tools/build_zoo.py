#!/usr/bin/env python
"""Train, measure and release the CPU model zoo: every detector x neck on the built-in data.

    python tools/build_zoo.py --jobs 2        # all 12 models (make zoo); resumable
    python tools/build_zoo.py --detectors retinanet --necks fpn bifpn
    python tools/build_zoo.py --recipe configs --out output/zoo_runs   # the configs' schedule

One command does it all: `tools/compare.py`'s run (same schedule and seed for every model; costs
measured in the same run), then each trained model is packaged as a release
(`tools/package_model.py`: weights in output/model_zoo/, entry in model_zoo/manifest.json) and
MODEL_ZOO.md is regenerated from the manifest. Interrupted, it resumes: finished runs are kept,
a run in training continues from its last checkpoint.

The recipe is the long-schedule reference's (``--recipe reference``, the default): its seed-1
runs, in its ledger (docs/reference/S<schedule>), so a release is the reference's run itself
when the reference has trained it (Faster R-CNN and RetinaNet), and a run trained here (Mask
R-CNN) is one more run of that recipe, recorded there. ``--recipe configs``: the configs' own
schedule and SEED, in ``--out``.
"""

import argparse
import os
from typing import List, Optional, Sequence, Tuple

import torch

from fpn_variants import model_zoo
from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    DETECTORS,
    NECKS,
    PAPER_NECKS,
    Cell,
    Ledger,
    Recipe,
    cells_from_template,
    compare,
    make_launcher,
)
from fpn_variants.comparison.reference import (
    REFERENCE_FOLDER,
    REFERENCE_SCHEDULE,
    SEEDS,
    schedule_folder,
    schedule_opts,
)
from fpn_variants.console import quiet_upstream_warnings

COMMAND = "python tools/build_zoo.py"
RECIPES = ("reference", "configs")


def zoo_runs(args: argparse.Namespace, cells: Sequence[Cell]) -> Tuple[str, Recipe, List[int]]:
    """The ledger folder, the recipe and the seed (one) of the releases' runs."""
    if args.recipe == "reference":
        folder = schedule_folder(args.out or REFERENCE_FOLDER, args.schedule)
        return folder, Recipe.make(schedule_opts(args.schedule)), [SEEDS[0]]
    folder, recipe = args.out or os.path.join("output", "zoo_runs"), Recipe()
    return folder, recipe, [recipe.config(cells[0], folder).SEED]


def check_weights_here(cells: Sequence[Cell], folder: str, seed: int) -> None:
    """Refuse, before anything runs, a run that is recorded but whose weights are not on this
    machine (records are committed, run folders are not): it would not be trained again."""
    ledger = Ledger(folder)
    for cell in cells:
        weights = os.path.join(ledger.run_dir(cell.name, seed), "model_final.pth")
        if os.path.isfile(ledger.run_path(cell.name, seed)) and not os.path.isfile(weights):
            raise SystemExit(
                f"{cell.name} seed {seed} is recorded ({ledger.run_path(cell.name, seed)}) but "
                f"its weights {weights} are not on this machine: release it where it was "
                "trained, or copy its run folder here (nothing was trained or released)"
            )


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--necks", nargs="+", default=list(PAPER_NECKS), choices=NECKS)
    parser.add_argument("--config-template", default=DEFAULT_TEMPLATE, help="as tools/compare.py")
    parser.add_argument("--recipe", default="reference", choices=RECIPES)
    parser.add_argument(
        "--schedule", type=int, default=REFERENCE_SCHEDULE, help="S of --recipe reference"
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"--recipe reference: the reference's folder (default {REFERENCE_FOLDER}); "
        "--recipe configs: the runs' ledger (default output/zoo_runs)",
    )
    parser.add_argument("--manifest", default=None, help="default: model_zoo/manifest.json")
    parser.add_argument("--releases-dir", default=model_zoo.DEFAULT_RELEASES_DIR)
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--threads", type=int, help="per run (default: cores / jobs)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--jobs and --threads must be at least 1")
    args.threads = args.threads or max(1, torch.get_num_threads() // args.jobs)
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    quiet_upstream_warnings()
    torch.set_num_threads(args.threads)
    cells = cells_from_template(args.config_template, args.detectors, args.necks)
    folder, recipe, seeds = zoo_runs(args, cells)
    check_weights_here(cells, folder, seeds[0])
    launcher = make_launcher("local", folder, args.jobs)
    rows = compare(cells, folder, recipe, seeds, launcher, threads=args.threads)
    for cell, row in zip(cells, rows):
        run = row.runs[0]
        model_zoo.package(
            Ledger(folder).run_dir(cell.name, run.seed),
            os.path.splitext(os.path.basename(cell.config_file))[0],
            releases_dir=args.releases_dir,
            manifest=args.manifest,
            source_config=cell.config_file,
            costs={
                "params": row.costs.params,
                "gflops": row.costs.gflops,
                "latency_ms": row.costs.latency_ms,
                "train_time_s": run.train_time_s,
            },
            hardware=row.costs.device,
            overwrite=True,  # a rerun re-packages the same weights
            trained_at=run.git_commit or None,
        )
    model_zoo.write_model_zoo(args.manifest, "MODEL_ZOO.md", command=COMMAND)
    print(f"released {len(rows)} models; MODEL_ZOO.md regenerated")


if __name__ == "__main__":
    main()
