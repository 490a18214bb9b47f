#!/usr/bin/env python
"""Compare necks side by side on one recipe: params, FLOPs, latency, memory and COCO AP.

Examples::

    # Faster R-CNN with the four necks on the built-in synthetic data (CPU), 2 seeds trained at
    # once on 2 cores (one thread each)
    python tools/compare.py --detectors faster_rcnn --necks fpn panet bifpn nasfpn --seeds 1 2 \\
        --jobs 2

    # COCO at 800 px, 8 GPUs per run, one run at a time on this machine
    python tools/compare.py --config-template 'configs/COCO/{detector}_R50_{neck}_1x.yaml' \\
        --seeds 1 2 3 --num-gpus 8 --out output/compare_coco

    # the same on Slurm (one job per run, requeued and resumed when preempted)
    python tools/compare.py --config-template 'configs/COCO/{detector}_R50_{neck}_1x.yaml' \\
        --seeds 1 2 3 --num-gpus 8 --launcher slurm --slurm-partition learnlab \\
        --slurm-time 4320 --out /checkpoint/$USER/compare_coco

    # the commands of the missing runs, for another scheduler; rerun without the flag to record
    python tools/compare.py --necks fpn bifpn --seeds 1 2 --print-commands

    # one table from the runs of several folders or machines
    python tools/compare.py --collect output/machine_a output/machine_b --out output/merged

    # your own COCO-format data, registered by path (as tools/train_net.py)
    python tools/compare.py --dataset-train my_train train.json train/ \\
        --dataset-test my_val val.json val/ --out output/compare_mine

A cell is a config file: ``--config-template`` fills ``{detector}`` and ``{neck}`` (the
registry's config suffix: FPN, PANet, BiFPN, NASFPN, C4, ...), or ``--configs`` takes files whose
detector and neck are read from the config. Every run (a cell and a seed) is `tools/train_net.py`
in its own fresh process, so its weights and AP are those of the command it records, bit for
bit. Each finished run writes a small record, OUT/runs/<cell>/seed<seed>.json (config, command,
metrics of every evaluation, time, device, versions, commit); rerunning the same command after an
interruption skips what is recorded and resumes an interrupted run from its last checkpoint.
Reports, made from the records alone: OUT/table.md, OUT/results.csv (one row per run),
OUT/results.json (one row per cell), plots; each run's logs, TensorBoard events and checkpoints
in OUT/runs/<cell>/seed<seed>/.
"""

import argparse

import torch

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    DETECTORS,
    LAUNCHERS,
    NECKS,
    PAPER_NECKS,
    Recipe,
    SlurmOptions,
    cells_from_configs,
    cells_from_template,
    collect,
    compare,
    make_launcher,
)
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.engine import add_dataset_arguments


def _cells_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cells and recipe")
    group.add_argument("--detectors", nargs="+", choices=DETECTORS, help="default: faster_rcnn")
    group.add_argument(
        "--necks", nargs="+", choices=NECKS, help=f"default: {' '.join(PAPER_NECKS)}"
    )
    group.add_argument(
        "--config-template",
        default=DEFAULT_TEMPLATE,
        help="config file of each cell, with {detector} and {neck} (default: %(default)s)",
    )
    group.add_argument(
        "--configs", nargs="+", metavar="FILE", help="one cell per config file (instead)"
    )
    group.add_argument(
        "--seeds", nargs="+", type=int, help="seeds of each cell (default: the config's SEED)"
    )
    group.add_argument("--eval-only", action="store_true", help="evaluate --weights, no training")
    group.add_argument(
        "--weights",
        default="",
        help="with --eval-only: checkpoint of each run, with {detector}, {neck} and {seed}",
    )
    add_dataset_arguments(parser, "COCO-format data by path for DATASETS.{SPLIT}, as train_net")


def _launch_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the runs execute")
    group.add_argument("--launcher", default="local", choices=LAUNCHERS)
    group.add_argument("--print-commands", action="store_true", help="print missing runs only")
    group.add_argument("--jobs", type=int, default=1, help="runs at once (local launchers)")
    group.add_argument("--threads", type=int, help="intra-op threads per run (default: cores/jobs)")
    group.add_argument("--num-gpus", type=int, default=0, help="GPUs per run (per machine)")
    group.add_argument("--num-machines", type=int, default=1, help="machines (nodes) per run")
    group.add_argument("--slurm-partition", default="")
    group.add_argument("--slurm-time", type=int, default=4320, help="minutes per job")
    group.add_argument("--slurm-account", default="")
    group.add_argument("--slurm-cpus-per-task", type=int, default=10)
    group.add_argument(
        "--sbatch", action="append", default=[], metavar="KEY=VALUE", help="extra sbatch option"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _cells_arguments(parser)
    _launch_arguments(parser)
    parser.add_argument("--out", default="output/compare")
    parser.add_argument("--no-train", action="store_true", help="measure costs only")
    parser.add_argument("--no-costs", action="store_true", help="do not measure costs")
    parser.add_argument("--repeats", type=int, default=10, help="latency repeats per cell")
    parser.add_argument(
        "--collect", nargs="+", metavar="DIR", help="report the records of these folders in OUT"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def _slurm_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> SlurmOptions:
    extra = {}
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--sbatch {item!r}: write KEY=VALUE, e.g. --sbatch constraint=volta32gb")
        extra[key.lstrip("-")] = value
    return SlurmOptions(
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        gpus_per_node=args.num_gpus,
        nodes=args.num_machines,
        cpus_per_task=args.slurm_cpus_per_task,
        account=args.slurm_account,
        sbatch=extra,
    )


def main(argv=None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    quiet_upstream_warnings()
    if args.jobs < 1 or (args.threads is not None and args.threads < 1) or args.num_machines < 1:
        parser.error("--jobs, --threads and --num-machines must be at least 1")
    if args.eval_only != bool(args.weights):
        parser.error("--eval-only and --weights go together (weights of each run to evaluate)")
    threads = args.threads or max(1, torch.get_num_threads() // args.jobs)
    torch.set_num_threads(threads)
    chosen = args.configs or args.detectors or args.necks  # --collect: else every cell found
    if args.configs:
        cells = cells_from_configs(args.configs)
    else:
        detectors, necks = args.detectors or ["faster_rcnn"], args.necks or list(PAPER_NECKS)
        cells = cells_from_template(args.config_template, detectors, necks)
    if args.collect:
        collect(args.collect, args.out, cells if chosen else None)
    else:
        launcher = None
        if not (args.no_train or args.print_commands):
            launcher = make_launcher(
                args.launcher, args.out, args.jobs, args.num_gpus, _slurm_options(args, parser)
            )
        recipe = Recipe.make(
            args.opts, {"train": args.dataset_train, "test": args.dataset_test}, args.eval_only
        )
        compare(
            cells, args.out, recipe, args.seeds, launcher, threads, args.repeats,
            measure=not (args.no_costs or args.print_commands), weights=args.weights,
            num_gpus=args.num_gpus, num_machines=args.num_machines,
            commands_only=args.print_commands,
        )  # fmt: skip
        if args.print_commands:
            return
    with open(f"{args.out}/table.md") as f:
        print(f.read())


if __name__ == "__main__":
    main()
