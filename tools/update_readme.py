#!/usr/bin/env python
"""Write the generated sections of README.md from result files (never edit them by hand).

    python tools/update_readme.py [--compare output/reference] [--bench output/bench_necks]
                                  [--bench-train output/bench_train]

- between ``<!-- reference:begin -->`` and ``<!-- reference:end -->`` of
  docs/one_epoch_comparison.md: ``table.md`` of a ``tools/compare.py`` run (the 1-epoch
  comparison, ``benchmarks/reference_comparison.sh``), its plots copied to ``docs/images/``, and
  every run's AP per seed (README's table of the comparison is the long-schedule reference's,
  which ``tools/reference.py --report`` writes);
- between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``: the ratios of
  ``benchmarks/bench_necks.py`` (``results.json``);
- between ``<!-- bench-train:begin -->`` and ``<!-- bench-train:end -->``: ``table.md`` of
  ``benchmarks/bench_train.py`` (training throughput, ours against stock Detectron2);
- between ``<!-- configs:begin -->`` and ``<!-- configs:end -->``: the config files of
  ``configs/`` and how many there are (always; ``tests/test_docs.py`` checks it is current);
- between ``<!-- options:begin -->`` and ``<!-- options:end -->``: the necks' option tables, from
  their declarations (:func:`fpn_variants.option_tables.option_tables`), always.
A section whose source is missing is left as it is. Each section opens with its provenance line
(:mod:`fpn_variants.provenance`): the commit of the code that made its numbers, as its results or
run records keep it, and the commands that made it.
"""

import argparse
import glob
import json
import os
import re
import shutil

from fpn_variants.comparison import LATE_FRACTION, read_ledger
from fpn_variants.option_tables import option_tables
from fpn_variants.provenance import current_line, provenance_line, replace_section
from fpn_variants.registry import NECK_REGISTRY

COMMAND = "python tools/update_readme.py"
# The configs section is made from the files alone, always rewritten; this test fails when stale.
CONFIGS_TEST = "tests/test_docs.py"
# What remakes a benchmark's results (both benchmarks: the Makefile).
BENCHMARK = "make benchmark"


def results_line(results: dict) -> str:
    """The provenance line of a section made from a benchmark's ``results.json``: the commit and
    command it recorded when it ran, or that they were not recorded (results made before)."""
    if not results.get("command"):
        why = "made before results recorded their commit and command"
        return provenance_line([COMMAND], [], why=why, rerun=BENCHMARK)
    return provenance_line([results["command"], COMMAND], [results.get("commit")], rerun=BENCHMARK)


def compare_section(folder: str, images: str, command: str) -> str:
    """The comparison's table and plots (copied to ``images``, linked as ``images/``), under the
    commits its run records name; ``command`` is the one that trained the runs into ``folder``."""
    with open(os.path.join(folder, "table.md")) as f:
        table = f.read()
    runs, _ = read_ledger([folder])
    line = provenance_line([command, COMMAND], [run.git_commit for run in runs])
    os.makedirs(images, exist_ok=True)
    pictures = []
    for name in ("ap_vs_gflops.png", "ap_by_size.png", "learning_curves.png", "detections.png"):
        src = os.path.join(folder, name)
        if os.path.isfile(src):
            shutil.copy(src, os.path.join(images, name))
            pictures.append(f"![{name[:-4]}](images/{name})")
    return line + "\n\n" + table + "\n" + " ".join(pictures) + "\n"


def per_seed_section(folder: str) -> str:
    """Every run of a comparison (its records): final box AP and AP_S, the AP of its evaluation
    after 80% of the iterations when there was one, and its training time."""
    lines = [
        "| detector | neck | seed | AP | AP_S | AP after 80% | training iterations (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    runs, _ = read_ledger([folder])
    for run in runs:
        box = run.metrics["bbox"]
        history = {e.iteration: e.metrics["bbox"]["AP"] for e in run.evaluations}
        early = history.get(round((1 - LATE_FRACTION) * run.iterations))
        lines.append(
            f"| {run.detector} | {run.neck} | {run.seed} | {box['AP']:.1f} | "
            f"{box['APs']:.1f} | {'–' if early is None else f'{early:.1f}'} | "
            f"{run.train_time_s:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_one_epoch_doc(folder: str, doc: str, command: str) -> None:
    """Rewrite the ``reference`` block of the 1-epoch comparison's page ``doc`` from ``folder``;
    its plots go to ``images/`` next to it."""
    images = os.path.join(os.path.dirname(os.path.abspath(doc)), "images")
    section = compare_section(folder, images, command)
    section += "\nEvery run:\n\n" + per_seed_section(folder)
    with open(doc, encoding="utf-8") as f:
        text = replace_section(f.read(), "reference", section, doc)
    with open(doc, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"updated {doc}")


def _leaf_configs(folder: str, ext: str = ".yaml") -> list:
    """File names of the leaf configs in ``folder`` (not the Base-*.yaml files)."""
    names = [os.path.basename(p) for p in glob.glob(os.path.join(folder, "*" + ext))]
    return sorted(name for name in names if not name.startswith("Base-"))


def _recipe_count(config_dir: str, recipe: str) -> str:
    """'N: P detector x neck, B FPN-paper baselines' of the leaf configs of configs/<recipe>."""
    leaves = _leaf_configs(os.path.join(config_dir, recipe))
    paper = {row.config_suffix: row.paper for row in NECK_REGISTRY}
    papers = sum(1 for name in leaves if paper.get(re.sub(r"^.*_R\d+_([^_.]+).*$", r"\1", name)))
    baselines = len(leaves) - papers
    text = f"{len(leaves)}: {papers} detector × neck"
    return text + (f", {baselines} FPN-paper baselines" if baselines else "")


def configs_section(config_dir: str = "configs") -> str:
    """A table of the leaf config files of ``config_dir`` and how many there are."""
    lazy = sum(
        len(_leaf_configs(os.path.join(config_dir, "LazyConfig", recipe), ".py"))
        for recipe in ("Synthetic", "COCO")
    )
    return "\n".join(
        [
            current_line(COMMAND, CONFIGS_TEST),
            "",
            "| files | recipe | how many |",
            "|---|---|---|",
            "| `configs/Synthetic/<detector>_R18_<NECK>.yaml` | CPU, built-in data | "
            + _recipe_count(config_dir, "Synthetic")
            + " |",
            "| `configs/COCO/<detector>_R50_<NECK>_1x.yaml` | COCO (GPUs, ImageNet R50) | "
            + _recipe_count(config_dir, "COCO")
            + " |",
            "| `configs/LazyConfig/{Synthetic,COCO}/*.py` | the same, as LazyConfig files | "
            + f"{lazy} |",
        ]
    )


def bench_section(folder: str) -> str:
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    lines = [
        results_line(results),
        "",
        f"{results['threads']} threads, batch 1, eval mode, median of {results['repeats']} "
        "interleaved runs; roofline = GFLOP/s of a 256-channel 3x3 conv at 100x100 timed in "
        "turns with each pair; FLOPs by fvcore; training step = forward + backward in train "
        "mode, with the share of its time in convolution kernels (forward and backward, "
        "torch.profiler) ours / peer and its fraction of the roofline (3x the forward's FLOPs); "
        "ours bf16 = the same optimized neck under bfloat16 autocast, timed in the same turns "
        "(the peers run float32).",
        "",
        "| neck (peer, config) | ours (ms) | peer (ms) | ours / peer | GFLOPs | % of roofline "
        "| max rel. diff | training step ours / peer | step in convs ours / peer "
        "| step % of roofline | ours bf16 (ms) | bf16 / fp32 ours | bf16 ours / fp32 peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["pairs"].items():
        if "skipped" in r:
            lines.append(f"| {name} | – | – | peer not installed |" + " – |" * 9)
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
            f"{diff} | {train} | {convs} | {roof} | {_bf16_columns(r)} |"
        )
    return "\n".join(lines) + "\n"


def bench_train_section(folder: str) -> str:
    """``table.md`` of ``benchmarks/bench_train.py`` under the provenance its results recorded."""
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as f:
        line = results_line(json.load(f))
    with open(os.path.join(folder, "table.md"), encoding="utf-8") as f:
        return line + "\n\n" + f.read()


def _bf16_columns(pair: dict) -> str:
    """Ours in bfloat16 (autocast; the peers run float32): ms, and its ratios to ours in
    float32 and to the peer; dashes in results made before bench_necks timed it."""
    if "ours_bf16" not in pair:
        return "– | – | –"
    ms = pair["ours_bf16"]["median"]
    return f"{ms * 1e3:.0f} | {pair['bf16_ratio']:.2f} | {ms / pair['peer']['median']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--compare", default="output/reference")
    parser.add_argument(
        "--compare-command",
        default="bash benchmarks/reference_comparison.sh",
        help="the command that trained --compare's runs (named in the sections' first line)",
    )
    parser.add_argument("--one-epoch", default="docs/one_epoch_comparison.md", help="its page")
    parser.add_argument("--bench", default="output/bench_necks")
    parser.add_argument("--bench-train", default="output/bench_train")
    parser.add_argument("--configs", default="configs", help="the folder the configs block lists")
    args = parser.parse_args()
    with open(args.readme) as f:
        text = f.read()
    text = replace_section(text, "configs", configs_section(args.configs))
    text = replace_section(text, "options", option_tables())
    if os.path.isfile(os.path.join(args.compare, "table.md")) and os.path.isfile(args.one_epoch):
        write_one_epoch_doc(args.compare, args.one_epoch, args.compare_command)
    if os.path.isfile(os.path.join(args.bench, "results.json")):
        text = replace_section(text, "bench", bench_section(args.bench))
    if all(os.path.isfile(os.path.join(args.bench_train, f)) for f in ("table.md", "results.json")):
        text = replace_section(text, "bench-train", bench_train_section(args.bench_train))
    with open(args.readme, "w") as f:
        f.write(text)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
