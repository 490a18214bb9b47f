#!/usr/bin/env python
"""The long-schedule reference comparison (docs/reference_comparison.md), built run by run.

    make reference                            # = python tools/reference.py --jobs 2
    python tools/reference.py --print-commands   # the missing runs, as commands
    python tools/reference.py --report        # docs/reference/runs.csv from the records alone

The grid, seeds 1-3 each, one recipe for every neck (:data:`RECIPE`: the CPU configs of
configs/Synthetic in float32 with channels-last), in this order:

1. Faster R-CNN, the four paper necks, S iterations (S = 1,000: 4 epochs of the synthetic data);
2. the same at 2S: a conclusion of the reference must survive doubling the schedule;
3. Faster R-CNN, the FPN paper's baselines, at S;
4. RetinaNet, the four paper necks, at S.

Each group runs seed by seed (every neck's seed 1 first), so a partial reference is already
paired. A finished run's record goes to ``docs/reference/S<iterations>/runs/<cell>/seed<N>.json``
(committed; the run folders stay local, see its .gitignore): a rerun, on this machine or another,
trains only the runs whose record is missing, and an interrupted run resumes from its last
checkpoint. ``docs/reference/runs.csv`` (one row per run) is rewritten from the records.
"""

import argparse
import os
import sys
from typing import List, Sequence, Tuple

import torch

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    NECKS,
    PAPER_NECKS,
    Ledger,
    Recipe,
    cells_from_template,
    compare,
    make_launcher,
)
from fpn_variants.comparison.reports import runs_csv_text
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.io import atomic_write_text

SEEDS = (1, 2, 3)
# Precision pinned, so that the recipe stays this one whatever the configs' defaults become.
RECIPE = ("SOLVER.AMP.ENABLED", "False", "MODEL.CHANNELS_LAST", "True")
# Learning curves: an evaluation (and a checkpoint, 115 MB with NAS-FPN) every quarter of the
# schedule.
EVALUATIONS_PER_RUN = 4
BASELINES = tuple(neck for neck in NECKS if neck not in PAPER_NECKS)

# (detector, necks, multiple of S), in the order they run.
Group = Tuple[str, Tuple[str, ...], int]
GROUPS: Tuple[Group, ...] = (
    ("faster_rcnn", PAPER_NECKS, 1),
    ("faster_rcnn", PAPER_NECKS, 2),
    ("faster_rcnn", BASELINES, 1),
    ("retinanet", PAPER_NECKS, 1),
)


def schedule_folder(out: str, iterations: int) -> str:
    """The ledger of one schedule: ``<out>/S<iterations>``."""
    return os.path.join(out, f"S{iterations}")


def schedule_opts(iterations: int) -> List[str]:
    """The recipe's overrides at ``iterations`` iterations."""
    period = str(max(1, iterations // EVALUATIONS_PER_RUN))
    schedule = ["SOLVER.MAX_ITER", str(iterations), "TEST.EVAL_PERIOD", period]
    return [*RECIPE, *schedule, "SOLVER.CHECKPOINT_PERIOD", period]


def write_runs_csv(out: str) -> str:
    """Rewrite ``<out>/runs.csv`` from the records of every schedule folder; return its path."""
    folders = sorted(
        os.path.join(out, name)
        for name in os.listdir(out)
        if name.startswith("S") and os.path.isdir(os.path.join(out, name, "runs"))
    )
    records = [record for folder in folders for record in Ledger(folder).runs()]
    path = os.path.join(out, "runs.csv")
    atomic_write_text(path, runs_csv_text(records))
    return path


def run_groups(args: argparse.Namespace, groups: Sequence[Group] = GROUPS) -> None:
    """Train (or, with ``--print-commands``, print) the missing runs of ``groups``, seed by seed,
    rewriting runs.csv after each seed."""
    for detector, necks, multiple in groups:
        iterations = multiple * args.schedule
        folder = schedule_folder(args.out, iterations)
        cells = cells_from_template(DEFAULT_TEMPLATE, [detector], list(necks))
        recipe = Recipe.make(schedule_opts(iterations))
        launcher = None
        if not args.print_commands:
            launcher = make_launcher("local", folder, args.jobs)
        for seed in SEEDS:
            compare(
                cells, folder, recipe, [seed], launcher, threads=1,
                measure=args.costs and multiple == 1 and not args.print_commands,
                commands_only=args.print_commands,
            )  # fmt: skip
            if not args.print_commands:
                print(f"{write_runs_csv(args.out)} rewritten", file=sys.stderr)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/reference")
    parser.add_argument("--schedule", type=int, default=1000, help="S, in iterations")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--no-costs", dest="costs", action="store_false", help="skip the costs")
    parser.add_argument("--print-commands", action="store_true", help="print missing runs only")
    parser.add_argument("--report", action="store_true", help="only rewrite runs.csv")
    args = parser.parse_args(argv)
    if args.schedule < EVALUATIONS_PER_RUN or args.jobs < 1:
        parser.error(f"--schedule must be at least {EVALUATIONS_PER_RUN} and --jobs at least 1")
    quiet_upstream_warnings()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    if not args.report:
        run_groups(args)
    if not args.print_commands:
        print(f"{write_runs_csv(args.out)} written")


if __name__ == "__main__":
    main()
