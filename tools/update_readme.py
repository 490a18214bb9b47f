#!/usr/bin/env python
"""Write the generated sections of README.md from result files (never edit them by hand).

    python tools/update_readme.py [--compare output/compare] [--bench output/bench_necks]

- between ``<!-- compare:begin -->`` and ``<!-- compare:end -->``: ``table.md`` of a
  ``tools/compare.py`` run (``make demo``), plus its plots copied to ``docs/images/``;
- between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``: the ratios of
  ``benchmarks/bench_necks.py`` (``results.json``).
A section whose source is missing is left as it is.
"""

import argparse
import json
import os
import re
import shutil


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


def bench_section(folder: str) -> str:
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    lines = [
        f"{results['threads']} threads, batch 1, eval mode, median of {results['repeats']} "
        "interleaved runs; roofline = GFLOP/s of a 256-channel 3x3 conv at 100x100 timed in "
        "turns with each pair; FLOPs by fvcore; training step = forward + backward in train "
        "mode.",
        "",
        "| neck (peer, config) | ours (ms) | peer (ms) | ours / peer | GFLOPs | % of roofline "
        "| max rel. diff | training step ours / peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["pairs"].items():
        if "skipped" in r:
            lines.append(f"| {name} | – | – | peer not installed | – | – | – | – |")
            continue
        diff = "not the same function" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.0e}"
        train = f"{r['train']['ratio']:.2f}" if "train" in r else "–"
        lines.append(
            f"| {name} | {r['ours']['median'] * 1e3:.0f} | {r['peer']['median'] * 1e3:.0f} | "
            f"{r['ratio']:.2f} | {r['gflops']:.2f} | {r['roofline_fraction'] * 100:.0f}% | "
            f"{diff} | {train} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--compare", default="output/compare")
    parser.add_argument("--bench", default="output/bench_necks")
    args = parser.parse_args()
    with open(args.readme) as f:
        text = f.read()
    if os.path.isfile(os.path.join(args.compare, "table.md")):
        images = os.path.join(os.path.dirname(os.path.abspath(args.readme)), "docs", "images")
        text = replace_section(text, "compare", compare_section(args.compare, images))
    if os.path.isfile(os.path.join(args.bench, "results.json")):
        text = replace_section(text, "bench", bench_section(args.bench))
    with open(args.readme, "w") as f:
        f.write(text)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
