#!/usr/bin/env python
"""AP parity of two training recipes that differ only in precision or memory format (issue 20):
the same cells and seeds trained by ``tools/compare.py`` twice, compared seed by seed.

    make parity                                      # the whole protocol (long: many trainings)
    python tools/precision_parity.py docs/parity/fp32 docs/parity/bf16_cl [--out FILE]

For each (detector, neck) in both folders' run records (``OUT/runs/<cell>/seed<N>.json``): the
mean over seeds of (fast - baseline) box AP and AP_S, paired by seed, with its 95% Student-t
interval. The verdict:

- "parity": the mean difference of AP within +-1 and its interval inside +-2.5;
- "no parity": the interval is inside +-2.5 but the mean outside +-1, or 8 seeds still leave the
  interval wider;
- "add seeds": otherwise (under 3 seeds, or an interval wider than +-2.5 with under 8 seeds):
  rerun both ``tools/compare.py`` commands with more ``--seeds`` (finished runs are kept).

An interval that contains 0 only because it is wide is not parity.
"""

import argparse
import math
import os
from typing import Dict, List, Tuple

from fpn_variants.comparison import PairedDifference, paired_difference, read_ledger
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.provenance import command_line, provenance_line

# The decision rule of issue 20 (box AP points).
MAX_MEAN, MAX_HALF_INTERVAL, MIN_SEEDS, MAX_SEEDS = 1.0, 2.5, 3, 8
METRICS = ("AP", "APs")

Runs = Dict[Tuple[str, str], Dict[int, Dict[str, float]]]


def read_runs(folder: str) -> Runs:
    """{(detector, neck key): {seed: {metric: value}}} from the run records of a
    ``tools/compare.py`` output folder."""
    if not os.path.isdir(os.path.join(folder, "runs")):
        raise FileNotFoundError(
            f"{folder} has no run records: run tools/compare.py --out {folder} first"
        )
    runs: Runs = {}
    records, _ = read_ledger([folder])
    for record in records:
        box = record.metrics.get("bbox", {})
        metrics = {m: box[m] for m in METRICS if box.get(m) is not None and math.isfinite(box[m])}
        runs.setdefault((record.detector, record.neck), {})[record.seed] = metrics
    return runs


def verdict(difference: PairedDifference) -> str:
    """ "parity", "add seeds" or "no parity" for a paired AP difference (see the module doc)."""
    n, mean, interval = difference.n, difference.mean, difference.ci95
    decided = interval is not None and n >= MIN_SEEDS
    if decided and -MAX_HALF_INTERVAL <= interval[0] and interval[1] <= MAX_HALF_INTERVAL:
        return "parity" if abs(mean) <= MAX_MEAN else "no parity"
    return "add seeds" if n < MAX_SEEDS else "no parity"


def parity_rows(baseline: Runs, fast: Runs) -> List[Dict]:
    """One row per cell in both: the paired differences of :data:`METRICS` and the verdict."""
    rows = []
    for cell in sorted(set(baseline) & set(fast)):
        row = {"detector": cell[0], "neck": cell[1]}
        for metric in METRICS:
            row[metric] = paired_difference(
                {s: v[metric] for s, v in fast[cell].items() if metric in v},
                {s: v[metric] for s, v in baseline[cell].items() if metric in v},
            )
        row["verdict"] = verdict(row["AP"])
        rows.append(row)
    return rows


def _format(difference: PairedDifference) -> str:
    if difference.mean is None:
        return "-"
    if difference.ci95 is None:
        return f"{difference.mean:+.2f}"
    low, high = difference.ci95
    return f"{difference.mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def render(rows: List[Dict], baseline: str, fast: str, command: str) -> str:
    """The table of ``rows``, under the commits of the runs in both folders and ``command`` (the
    one that wrote it)."""
    commits = [r.git_commit for folder in (baseline, fast) for r in read_ledger([folder])[0]]
    lines = [
        provenance_line(["make parity", command], commits, written_at=git_commit()),
        "",
        f"Fast recipe ({fast}) minus baseline ({baseline}), paired by seed: mean [95% interval]; "
        "each run's record holds its command.",
        "",
        "| detector | neck | seeds | AP difference | AP_S difference | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['detector']} | {r['neck']} | {r['AP'].n} | {_format(r['AP'])} | "
            f"{_format(r['APs'])} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> List[Dict]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("baseline", help="tools/compare.py output folder of the float32 recipe")
    parser.add_argument("fast", help="tools/compare.py output folder of the fast recipe")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    rows = parity_rows(read_runs(args.baseline), read_runs(args.fast))
    if not rows:
        raise SystemExit(f"no (detector, neck) cell is in both {args.baseline} and {args.fast}")
    table = render(rows, args.baseline, args.fast, command_line("tools/precision_parity.py", argv))
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return rows


if __name__ == "__main__":
    main()
