#!/usr/bin/env python
"""Train, measure and release the CPU model zoo: every detector x neck on the built-in data.

    python tools/build_zoo.py                 # all 12 models (make zoo); resumable
    python tools/build_zoo.py --detectors retinanet --necks fpn bifpn

One command does it all: `tools/compare.py`'s run (same schedule and seed for every model, the
configs' SEED; costs measured in the same run) into OUT, then each trained model is packaged as a
release (`tools/package_model.py`: weights in output/model_zoo/, entry in
model_zoo/manifest.json) and MODEL_ZOO.md is regenerated from the manifest. Interrupted, it
resumes: finished runs are kept, a run in training continues from its last checkpoint.
"""

import argparse
import os
from typing import List, Optional

import torch

from fpn_variants import model_zoo
from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    DETECTORS,
    NECKS,
    PAPER_NECKS,
    Ledger,
    cells_from_template,
    compare,
    make_launcher,
)

COMMAND = "python tools/build_zoo.py"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--necks", nargs="+", default=list(PAPER_NECKS), choices=NECKS)
    parser.add_argument("--config-template", default=DEFAULT_TEMPLATE, help="as tools/compare.py")
    parser.add_argument(
        "--out",
        default="output/zoo_runs",
        help="training runs and cost records (the configs' own schedule: not the demo's)",
    )
    parser.add_argument("--manifest", default=None, help="default: model_zoo/manifest.json")
    parser.add_argument("--releases-dir", default=model_zoo.DEFAULT_RELEASES_DIR)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cells = cells_from_template(args.config_template, args.detectors, args.necks)
    rows = compare(cells, args.out, launcher=make_launcher("local", args.out), threads=args.threads)
    for cell, row in zip(cells, rows):
        run = row.runs[0]  # one run: the config's SEED
        model_zoo.package(
            Ledger(args.out).run_dir(cell.name, run.seed),
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
        )
    model_zoo.write_model_zoo(args.manifest, "MODEL_ZOO.md", command=COMMAND)
    print(f"released {len(rows)} models; MODEL_ZOO.md regenerated")


if __name__ == "__main__":
    main()
