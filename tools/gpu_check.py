#!/usr/bin/env python
"""One-shot check of the project on a GPU machine: training, CPU agreement and neck speed.

    python tools/gpu_check.py                        # on a CUDA machine: report in output/gpu_check
    python tools/gpu_check.py --device cpu --quick   # the same code path on the CPU (the tests)

1. Trains every detector x neck of the Synthetic recipe (configs/Synthetic) for a few
   iterations on the device with the project's Trainer, in float32 and with AMP
   (SOLVER.AMP.ENABLED: float16 with a gradient scaler on CUDA, bfloat16 on the CPU); each run's
   losses must stay finite.
2. Builds each neck's backbone on the CPU, copies it to the device and compares their outputs on
   the same image (max relative difference per level).
3. Times each neck's forward and forward + backward on the device against Detectron2's FPN and
   the peers (benchmark pairs of fpn_variants.peer_pairs), synchronised after every call.

Writes OUT/gpu_check.md and OUT/gpu_check.json. The data is a small synthetic dataset made in
OUT/data, so nothing needs downloading.
"""

import argparse
import copy
import json
import math
import os
import time
from typing import Dict, List

import torch
from detectron2.modeling import build_backbone

from fpn_variants.analysis import interleaved_latency, synchronized
from fpn_variants.comparison import PAPER_NECKS, Recipe, cells_from_template
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.data import SyntheticSpec, generate_synthetic_dataset
from fpn_variants.engine import Trainer
from fpn_variants.io import atomic_write_text
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.peer_pairs import COST_ONLY, PAIRS, max_rel_diff
from fpn_variants.provenance import command_line, provenance_line

DETECTORS = ("faster_rcnn", "retinanet", "mask_rcnn")
TEMPLATE = "configs/Synthetic/{detector}_R18_{neck}.yaml"
# Small and short: this checks that everything runs and agrees, it does not train models.
QUICK = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128", "MODEL.FPN.OUT_CHANNELS", "64",
]  # fmt: skip


def _recipe(out: str, device: str, opts: List[str]) -> Recipe:
    paths = generate_synthetic_dataset(
        os.path.join(out, "data"), {"train": SyntheticSpec(num_images=8, seed=1)}
    )
    data = {"train": [("gpu_check_train", *paths["train"])]}
    return Recipe.make([*opts, "MODEL.DEVICE", device], data)


def train_cell(cell, recipe: Recipe, out: str, iterations: int, amp: bool) -> Dict:
    """A few training iterations of one cell: first and last total loss, whether every loss was
    finite, seconds per iteration and (CUDA) peak memory."""
    opts = [
        *recipe.opts, "SOLVER.MAX_ITER", str(iterations), "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "1", "DATASETS.TEST", "()", "TEST.PRECISE_BN.ENABLED", "False",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.AMP.ENABLED", str(amp),
    ]  # fmt: skip
    run_dir = os.path.join(out, "runs", cell.name + ("_amp" if amp else ""))
    cfg = Recipe.make(opts, recipe.datasets).config(cell, run_dir, seed=1)
    if cfg.MODEL.DEVICE.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    seconds = (time.perf_counter() - start) / iterations
    losses = [value for value, _ in trainer.storage.history("total_loss").values()]
    peak = torch.cuda.max_memory_allocated() / 2**20 if cfg.MODEL.DEVICE != "cpu" else None
    return {
        "cell": cell.name,
        "amp": amp,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "finite": all(math.isfinite(v) for v in losses),
        "seconds_per_iteration": seconds,
        "peak_mb": peak,
    }


def agreement(cell, recipe: Recipe, device: str, size: int = 256) -> Dict:
    """Max relative difference of the neck's outputs on ``device`` to the same weights' outputs
    on the CPU, at one random image, per output level."""
    cfg = Recipe.make([*recipe.opts, "MODEL.DEVICE", "cpu"], recipe.datasets).config(cell, "")
    torch.manual_seed(0)
    on_cpu = build_backbone(cfg).eval()
    on_device = copy.deepcopy(on_cpu).to(device)
    image = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected, found = on_cpu(image), on_device(image.to(device))
    diffs = {
        name: float((found[name].cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
        for name, ref in expected.items()
    }
    return {"cell": cell.name, "max_rel_diff": max(diffs.values()), "levels": diffs}


def time_pair(name: str, device: str, repeats: int) -> Dict:
    """Median forward (eval, no grad) and forward + backward (train) times of our neck and the
    peer's on ``device``, in turns, synchronised after each call; their ratios ours / peer."""
    try:
        pair = PAIRS[name]().to(device)
    except ImportError as e:
        return {"pair": name, "skipped": f"peer not installed: {e}"}
    pair.ours.eval()
    pair.peer.eval()
    calls = {"ours": pair.ours_call, "peer": pair.peer_call}
    with torch.no_grad():
        diff = None if name in COST_ONLY else max_rel_diff(pair.ours_call(), pair.peer_call())
        forward = interleaved_latency(
            {k: synchronized(f, device) for k, f in calls.items()}, repeats
        )
    pair.ours.train()
    pair.peer.train()
    steps = pair.training_steps()
    train = interleaved_latency({k: synchronized(f, device) for k, f in steps.items()}, repeats)
    ms = {
        f"{kind}_{who}_ms": stats[who]["median"] * 1e3
        for kind, stats in (("forward", forward), ("train", train))
        for who in ("ours", "peer")
    }
    return {
        "pair": name,
        "max_rel_diff": diff,
        **ms,
        "forward_ratio": forward["ours"]["median"] / forward["peer"]["median"],
        "train_ratio": train["ours"]["median"] / train["peer"]["median"],
    }


def _report(results: Dict) -> str:
    made = provenance_line([results["command"]], [results.get("commit")])
    lines = [f"# GPU check on {results['device']}", "", made, ""]
    lines += ["## Training", "", "| cell | AMP | first loss | last loss | finite | s / it |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in results["training"]:
        lines.append(
            f"| {r['cell']} | {'yes' if r['amp'] else 'no'} | {r['first_loss']:.3f} | "
            f"{r['last_loss']:.3f} | {r['finite']} | {r['seconds_per_iteration']:.3f} |"
        )
    lines += ["", f"## {results['device']} against the CPU (same weights, same image)", ""]
    lines += ["| cell | max relative difference |", "|---|---|"]
    lines += [f"| {r['cell']} | {r['max_rel_diff']:.1e} |" for r in results["agreement"]]
    lines += ["", "## Necks against the peers (batch 1; median of interleaved, synchronised runs)"]
    lines += [
        "",
        "| pair | forward ours / peer (ms) | ratio | forward + backward ours / peer (ms) ",
    ]
    lines[-1] += "| ratio | max rel. diff |"
    lines += ["|---|---|---|---|---|---|"]
    for r in results["timing"]:
        if "skipped" in r:
            lines.append(f"| {r['pair']} | {r['skipped']} | – | – | – | – |")
            continue
        diff = "not the same function" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.0e}"
        lines.append(
            f"| {r['pair']} | {r['forward_ours_ms']:.1f} / {r['forward_peer_ms']:.1f} | "
            f"{r['forward_ratio']:.2f} | {r['train_ours_ms']:.1f} / {r['train_peer_ms']:.1f} | "
            f"{r['train_ratio']:.2f} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    parser.add_argument("--out", default="output/gpu_check")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="128 px, 64-channel necks")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--necks", nargs="+", default=list(PAPER_NECKS))
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), help="benchmark pairs to time")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per neck")
    args = parser.parse_args(argv)
    quiet_upstream_warnings()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device (use --device cpu)")
    recipe = _recipe(args.out, args.device, QUICK if args.quick else [])
    cells = cells_from_template(TEMPLATE, args.detectors, args.necks)
    results = {
        "device": torch.cuda.get_device_name(args.device) if "cuda" in args.device else "CPU",
        "commit": git_commit(),
        "command": command_line("tools/gpu_check.py", argv),
        "training": [
            train_cell(cell, recipe, args.out, args.iterations, amp)
            for cell in cells
            for amp in (False, True)
        ],
        "agreement": [
            agreement(c, recipe, args.device) for c in cells if c.detector != "mask_rcnn"
        ],
        "timing": [time_pair(name, args.device, args.repeats) for name in args.pairs],
    }
    atomic_write_text(os.path.join(args.out, "gpu_check.json"), json.dumps(results, indent=2))
    atomic_write_text(os.path.join(args.out, "gpu_check.md"), _report(results))
    print(_report(results))
    return results


if __name__ == "__main__":
    main()
