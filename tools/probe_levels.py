#!/usr/bin/env python
"""How much of an object's class each feature of trained detectors holds: a linear probe per level.

    python tools/probe_levels.py docs/reference/S1000/runs/faster_rcnn_fpn/seed1 \\
        docs/reference/S1000/runs/faster_rcnn_bottom_up/seed1 --output docs/reference/probe.md

Each argument is a training output folder (its config.yaml and model_final.pth). For every
ground-truth box, each feature map is pooled (RoIAlign 7x7, averaged): the input image's colour,
the bottom-up features res2..., the neck's outputs p2...; a logistic regression per feature,
fitted on the boxes of the first --train-images training images, predicts the class of the boxes
of the first --test-images validation images (:mod:`fpn_variants.probe`). The table gives its
accuracy for all boxes and for the small ones, one row per run.
"""

import argparse
import os
from typing import Dict, List, Optional, Sequence

from fpn_variants.config import load_config
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.probe import IMAGE, SIZE_BUCKETS, ProbeResult, probe
from fpn_variants.provenance import command_line, provenance_line

COMMAND = "tools/probe_levels.py"


def _run_label(run_dir: str) -> str:
    """ "faster_rcnn_fpn/seed1" for ``.../faster_rcnn_fpn/seed1``."""
    path = os.path.normpath(run_dir)
    return f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"


def probe_run(run_dir: str, datasets: Sequence[str], images: Sequence[int]):
    """The probe results of the run in ``run_dir``, by feature."""
    config, weights = (os.path.join(run_dir, f) for f in ("config.yaml", "model_final.pth"))
    for path in (config, weights):
        if not os.path.isfile(path):
            raise SystemExit(
                f"{run_dir}: no {os.path.basename(path)}: give a finished run's folder"
            )
    return probe(load_config(config), weights, *datasets, images)


def _percent(result: Optional[ProbeResult], bucket: str) -> str:
    """``result``'s accuracy in % (on ``bucket``'s boxes if given), "–" if there is none."""
    accuracy = None if result is None else result.by_size[bucket][0] if bucket else result.accuracy
    return "–" if accuracy is None else f"{100 * accuracy:.1f}"


def _table(results: Dict[str, Dict[str, ProbeResult]], bucket: str = "") -> List[str]:
    """One row per run, one column per feature (in order of first appearance), accuracy in %."""
    names = list(dict.fromkeys(name for run in results.values() for name in run))
    channels = {name: r.channels for run in results.values() for name, r in run.items()}
    header = ["run", *(f"{name} ({channels[name]})" for name in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, run in results.items():
        cells = [_percent(run.get(name), bucket) for name in names]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def render(results: Dict[str, Dict[str, ProbeResult]], args: argparse.Namespace) -> str:
    """The page: provenance, what was measured, then the tables for all boxes and small ones."""
    first = next(iter(results.values()))[IMAGE]
    counts = ", ".join(f"{n} {bucket}" for bucket, (_, n) in first.by_size.items())
    small = SIZE_BUCKETS["small"][1]
    lines = [
        provenance_line([command_line(COMMAND)], [git_commit()]),
        "",
        "Accuracy (%) of a linear probe of each object's class (6 classes: chance 16.7%) from one "
        "feature, pooled over its ground-truth box (RoIAlign 7x7, then the mean over the grid; "
        "channels in brackets): the input image's colour (`image`), the bottom-up features "
        "(`res2`...) and the neck's outputs (`p2`...). Fitted on the boxes of the first "
        f"{args.train_images} training images, tested on those of the first {args.test_images} "
        f"validation images ({counts}). `fpn_variants/probe.py` says how.",
        "",
        "**All boxes**",
        "",
        *_table(results),
        "",
        f"**Small boxes** (area < {int(small ** 0.5)}^2 pixels)",
        "",
        *_table(results, "small"),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="training output folders")
    parser.add_argument("--train-images", type=int, default=100)
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--train-dataset", default="synthetic_multiscale_train")
    parser.add_argument("--test-dataset", default="synthetic_multiscale_val")
    parser.add_argument("--output", help="write the page here (default: print it)")
    args = parser.parse_args()
    quiet_upstream_warnings()
    results = {}
    for run_dir in args.runs:
        datasets = (args.train_dataset, args.test_dataset)
        results[_run_label(run_dir)] = probe_run(
            run_dir, datasets, (args.train_images, args.test_images)
        )
        print(f"{_run_label(run_dir)}: probed", flush=True)
    page = render(results, args)
    if args.output:
        with open(args.output, "w") as f:
            f.write(page)
        print(f"wrote {args.output}")
    else:
        print(page)


if __name__ == "__main__":
    main()
