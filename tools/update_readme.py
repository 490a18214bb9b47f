#!/usr/bin/env python
"""Write the generated sections of README.md from result files (never edit them by hand).

    python tools/update_readme.py [--compare output/reference] [--bench output/bench_necks]
                                  [--bench-train output/bench_train]

- between ``<!-- compare:begin -->`` and ``<!-- compare:end -->``: ``table.md`` of a
  ``tools/compare.py`` run (the reference comparison, ``make reference``), plus its plots copied
  to ``docs/images/``; the same table and every run's AP per seed between
  ``<!-- reference:begin -->`` and ``<!-- reference:end -->`` of docs/reference_comparison.md;
- between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``: the ratios of
  ``benchmarks/bench_necks.py`` (``results.json``);
- between ``<!-- bench-train:begin -->`` and ``<!-- bench-train:end -->``: ``table.md`` of
  ``benchmarks/bench_train.py`` (training throughput, ours against stock Detectron2);
- between ``<!-- options:begin -->`` and ``<!-- options:end -->``: the necks' option tables, from
  their declarations (:func:`fpn_variants.option_tables.option_tables`), always.
A section whose source is missing is left as it is.
"""

import argparse
import json
import os
import re
import shutil

from fpn_variants.compare import LATE_FRACTION
from fpn_variants.option_tables import option_tables


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no '<!-- {name}:begin/end -->' markers")
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def compare_section(folder: str, images: str) -> str:
    with open(os.path.join(folder, "table.md")) as f:
        table = f.read()
    os.makedirs(images, exist_ok=True)
    pictures = []
    for name in ("ap_vs_gflops.png", "ap_by_size.png"):
        src = os.path.join(folder, name)
        if os.path.isfile(src):
            shutil.copy(src, os.path.join(images, name))
            pictures.append(f"![{name[:-4]}](docs/images/{name})")
    return table + "\n" + " ".join(pictures) + "\n"


def per_seed_section(folder: str) -> str:
    """Every run of a comparison (its ``cells/*.json``): final box AP and AP_S, the AP of its
    evaluation after 80% of the iterations when there was one, and its training time."""
    lines = [
        "| detector | neck | seed | AP | AP_S | AP after 80% | training iterations (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in json.load(open(os.path.join(folder, "results.json"), encoding="utf-8")):
        path = os.path.join(folder, "cells", f"{row['detector']}_{row['key']}.json")
        with open(path, encoding="utf-8") as f:
            runs = json.load(f)["runs"]
        for seed in sorted(runs, key=int):
            run = runs[seed]
            box = run["metrics"]["bbox"]
            history = {int(it): ap for it, ap in run.get("ap_history", [])}
            early = history.get(round((1 - LATE_FRACTION) * run["iterations"]))
            lines.append(
                f"| {row['detector']} | {row['neck']} | {seed} | {box['AP']:.1f} | "
                f"{box['APs']:.1f} | {'–' if early is None else f'{early:.1f}'} | "
                f"{run['train_time_s']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def bench_section(folder: str) -> str:
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    lines = [
        f"{results['threads']} threads, batch 1, eval mode, median of {results['repeats']} "
        "interleaved runs; roofline = GFLOP/s of a 256-channel 3x3 conv at 100x100 timed in "
        "turns with each pair; FLOPs by fvcore; training step = forward + backward in train "
        "mode, with the share of its time in convolution kernels (forward and backward, "
        "torch.profiler) ours / peer and its fraction of the roofline (3x the forward's FLOPs).",
        "",
        "| neck (peer, config) | ours (ms) | peer (ms) | ours / peer | GFLOPs | % of roofline "
        "| max rel. diff | training step ours / peer | step in convs ours / peer "
        "| step % of roofline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["pairs"].items():
        if "skipped" in r:
            lines.append(f"| {name} | – | – | peer not installed | – | – | – | – | – | – |")
            continue
        diff = "not the same function" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.0e}"
        train, convs, roof = "–", "–", "–"
        if "train" in r:
            t = r["train"]
            train = f"{t['ratio']:.2f}"
            if "conv_share" in t:
                convs = (
                    f"{t['conv_share']['ours'] * 100:.0f}% / {t['conv_share']['peer'] * 100:.0f}%"
                )
                roof = f"{t['roofline_fraction'] * 100:.0f}%"
        lines.append(
            f"| {name} | {r['ours']['median'] * 1e3:.0f} | {r['peer']['median'] * 1e3:.0f} | "
            f"{r['ratio']:.2f} | {r['gflops']:.2f} | {r['roofline_fraction'] * 100:.0f}% | "
            f"{diff} | {train} | {convs} | {roof} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--compare", default="output/reference")
    parser.add_argument("--reference-doc", default="docs/reference_comparison.md")
    parser.add_argument("--bench", default="output/bench_necks")
    parser.add_argument("--bench-train", default="output/bench_train")
    args = parser.parse_args()
    with open(args.readme) as f:
        text = f.read()
    text = replace_section(text, "options", option_tables())
    if os.path.isfile(os.path.join(args.compare, "table.md")):
        images = os.path.join(os.path.dirname(os.path.abspath(args.readme)), "docs", "images")
        section = compare_section(args.compare, images)
        text = replace_section(text, "compare", section)
        if os.path.isfile(args.reference_doc):
            with open(args.reference_doc, encoding="utf-8") as f:
                doc = f.read()
            # the doc sits in docs/: its images are in images/
            doc_section = section.replace("](docs/images/", "](images/")
            doc_section += "\nEvery run:\n\n" + per_seed_section(args.compare)
            with open(args.reference_doc, "w", encoding="utf-8") as f:
                f.write(replace_section(doc, "reference", doc_section))
            print(f"updated {args.reference_doc}")
    if os.path.isfile(os.path.join(args.bench, "results.json")):
        text = replace_section(text, "bench", bench_section(args.bench))
    train_table = os.path.join(args.bench_train, "table.md")
    if os.path.isfile(train_table):
        with open(train_table, encoding="utf-8") as f:
            text = replace_section(text, "bench-train", f.read())
    with open(args.readme, "w") as f:
        f.write(text)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
