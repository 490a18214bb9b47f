"""Training throughput of the detectors of the CPU recipe against Detectron2's stock model, in one
process.

For each config (default: Faster R-CNN R18-FPN of configs/Synthetic), one trainer per row of
:data:`VARIANTS` is built:

* stock fp32: the config with Detectron2's own FPN (``build_resnet_fpn_backbone``, or
  ``build_retinanet_resnet_fpn_backbone`` for RetinaNet) and, for R-CNNs, Detectron2's
  ``StandardROIHeads`` whose poolers run torchvision's RoIAlign. Its poolers get the config's
  level rule (MODEL.ROI_HEADS.CANONICAL_*), so both pool the same boxes from the same levels;
* ours fp32: the config as ``tools/train_net.py`` trains it (this project's neck,
  ``PyramidROIHeads`` with the batched-matmul RoIAlign);
* ours channels-last (MODEL.CHANNELS_LAST), ours bf16 (SOLVER.AMP.ENABLED with PRECISION
  bfloat16: autocast, no gradient scaler) and ours channels-last + bf16.

All are :class:`fpn_variants.engine.Trainer` s, so a step is ``tools/train_net.py``'s: the next
batch from the (resumable) training loader with its DATALOADER.NUM_WORKERS workers, forward,
backward, gradient clipping and the optimizer step. Steps are timed in windows of ``--window``
iterations, the rows in turn after ``--warmup`` iterations each, so that the load of other
processes on the machine falls on all alike; throughput = images / median window time; the
speed-up of a row = its img/s / stock fp32's, also given per window pair (the row's window and
stock's of the same turn).

Then, for each model, torch.profiler over ``--profile-steps`` steps splits the step into data,
bottom-up, neck, RPN, RoI heads, loss, optimizer and the rest: forward ops by the module they run
in (record_function ranges), backward ops by the forward op that created them (autograd's
sequence numbers). GMAC/s: multiply-adds of the convolutions and linear layers of one training
forward (counted by module hooks) times 3 (forward, input gradient, weight gradient) per step
time, against this machine's conv roofline (``fpn_variants.analysis``: one large 3x3 conv).

    python benchmarks/bench_train.py [--configs faster_rcnn_R18_FPN retinanet_R18_FPN ...]
        [--variants "ours fp32" "ours bf16" ...] [--windows 6] [--window 4] [--warmup 3]
        [--out output/bench_train]

Writes OUT/results.json (every window time, shares, MACs; the commit of the code and the command
that made it) and OUT/table.md.
"""

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
from detectron2.utils.events import EventStorage

from fpn_variants.analysis import roofline_conv
from fpn_variants.config import check_config, load_config
from fpn_variants.engine import Trainer
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.precision import MixedPrecisionTrainer
from fpn_variants.provenance import command_line
from fpn_variants.roi_heads import POOLER_NAMES, set_roi_level_rule

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIG_DIR = os.path.join(ROOT, "configs", "Synthetic")

# Components of a step, in table order; "other" is the rest (preprocessing, the sum of losses,
# autograd bookkeeping).
COMPONENTS = ("data", "bottom_up", "neck", "rpn", "roi_heads", "loss", "optimizer", "other")
_RANGE = "bench_train::"

# Rows: label -> (Detectron2's stock model?, config overrides). The first is the baseline.
STOCK = "stock fp32"
CHANNELS_LAST = ["MODEL.CHANNELS_LAST", "True"]
BF16 = ["SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bfloat16"]
VARIANTS = {
    STOCK: (True, []),
    "ours fp32": (False, []),
    "ours channels-last": (False, CHANNELS_LAST),
    "ours bf16": (False, BF16),
    "ours channels-last + bf16": (False, CHANNELS_LAST + BF16),
}


def build_cfg(config: str, label: str, out_dir: str, opts: List[str]):
    """The config of row ``label`` of :data:`VARIANTS`, with ``opts`` for every row."""
    stock, overrides = VARIANTS[label]
    cfg = load_config(os.path.join(CONFIG_DIR, config + ".yaml"), opts + overrides, freeze=False)
    if stock:
        retina = cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        cfg.MODEL.BACKBONE.NAME = (
            "build_retinanet_resnet_fpn_backbone" if retina else "build_resnet_fpn_backbone"
        )
        if not retina:
            cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    slug = label.replace(" + ", "_").replace(" ", "_")
    cfg.OUTPUT_DIR = os.path.join(out_dir, "runs", f"{config}_{slug}")
    cfg.TEST.PRECISE_BN.ENABLED = False
    check_config(cfg)
    cfg.freeze()
    return cfg


def build_trainer(cfg) -> Trainer:
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    # The stock StandardROIHeads too: the config's level rule.
    roi_heads = getattr(trainer.model, "roi_heads", None)
    set_roi_level_rule(cfg, (getattr(roi_heads, name, None) for name in POOLER_NAMES))
    return trainer


def run_steps(trainer: Trainer, count: int) -> float:
    """``count`` training steps as DefaultTrainer.train runs them (without the hooks); seconds."""
    start = time.perf_counter()
    for _ in range(count):
        trainer.storage.iter = trainer.iter
        trainer.run_step()
        trainer.iter += 1
    return time.perf_counter() - start


@contextlib.contextmanager
def wrapped(obj, attr: str, label: str):
    """Run ``obj.attr(...)`` inside a record_function range ``label`` within the block."""
    original = getattr(obj, attr)
    had_own = attr in vars(obj)

    def call(*args, **kwargs):
        with torch.profiler.record_function(_RANGE + label):
            return original(*args, **kwargs)

    setattr(obj, attr, call)
    try:
        yield
    finally:
        if had_own:
            setattr(obj, attr, original)
        else:
            delattr(obj, attr)


def component_ranges(model) -> List[tuple]:
    """(object, method, component) to wrap: the deepest range around an op names its component."""
    out = []
    backbone = model.backbone
    bottom_up = getattr(backbone, "bottom_up", None)
    if bottom_up is not None:
        out += [(backbone, "forward", "neck"), (bottom_up, "forward", "bottom_up")]
    else:
        out.append((backbone, "forward", "bottom_up"))
    for name in ("proposal_generator", "roi_heads"):
        module = getattr(model, name, None)
        if module is not None:
            out.append((module, "forward", "rpn" if name == "proposal_generator" else name))
    if getattr(model, "proposal_generator", None) is not None:
        out.append((model.proposal_generator, "losses", "loss"))
    box_predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    if box_predictor is not None:
        out.append((box_predictor, "losses", "loss"))
    if type(model).__name__ == "RetinaNet":
        out.append((model.head, "forward", "rpn"))  # the dense head plays the RPN's part
        out.append((model, "losses", "loss"))
    return out


def profiled_step(trainer: Trainer) -> None:
    """One step of the trainer's run_step (SimpleTrainer's, or MixedPrecisionTrainer's with its
    autocast and gradient scaler) with a range around each phase."""
    inner = trainer._trainer
    amp = isinstance(inner, MixedPrecisionTrainer)
    with torch.profiler.record_function(_RANGE + "data"):
        data = next(inner._data_loader_iter)
    autocast = torch.autocast(inner.device_type, dtype=inner.precision) if amp else None
    with autocast or contextlib.nullcontext():
        loss_dict = inner.model(data)
        losses = sum(loss_dict.values())
    with torch.profiler.record_function(_RANGE + "optimizer"):
        inner.optimizer.zero_grad()
    with torch.profiler.record_function(_RANGE + "backward"):
        (inner.grad_scaler.scale(losses) if amp else losses).backward()
    with torch.profiler.record_function(_RANGE + "optimizer"):
        if amp:
            inner.grad_scaler.step(inner.optimizer)
            inner.grad_scaler.update()
        else:
            inner.optimizer.step()
    trainer.iter += 1


def step_shares(trainer: Trainer, steps: int) -> Dict[str, float]:
    """Fraction of the profiled steps' time in each of COMPONENTS (sums to 1)."""
    model = trainer.model
    with contextlib.ExitStack() as stack:
        for obj, attr, label in component_ranges(model):
            stack.enter_context(wrapped(obj, attr, label))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                profiled_step(trainer)
    events = prof.events()

    def own_range(event):
        """The component of the innermost range around ``event``, or the evaluate_function
        event of the backward node it runs in, whichever is closer."""
        node = event
        while node is not None:
            if node.name.startswith(_RANGE):
                return node.name[len(_RANGE) :], None
            if node.name.startswith("autograd::engine::evaluate_function"):
                return None, node
            node = node.cpu_parent
        return "other", None

    # Forward op sequence number -> component of the range it ran in.
    seq_component: Dict[int, str] = {}
    for event in events:
        if event.sequence_nr >= 0 and not event.name.startswith("autograd::"):
            label, _ = own_range(event)
            if label not in (None, "backward"):
                seq_component.setdefault(event.sequence_nr, label)
    totals = {c: 0.0 for c in COMPONENTS}
    for event in events:
        label, node = own_range(event)
        if node is not None:
            label = seq_component.get(node.sequence_nr, "other")
        if label in ("backward", None):
            label = "other"
        totals[label if label in totals else "other"] += event.self_cpu_time_total
    total = sum(totals.values()) or 1.0
    return {c: v / total for c, v in totals.items()}


def training_macs(trainer: Trainer) -> int:
    """Multiply-adds of the Conv2d and Linear layers in one training forward (next batch)."""
    macs = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs[0] += output.numel() * module.in_channels // module.groups * k
        else:
            macs[0] += output.numel() * module.in_features

    model = trainer.model
    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    try:
        data = next(trainer._trainer._data_loader_iter)
        model(data)  # no backward: the weights do not change
    finally:
        for h in handles:
            h.remove()
    return macs[0]


def roofline_gmacs(repeats: int = 5) -> float:
    """GMAC/s of one large 3x3 conv here (:func:`fpn_variants.analysis.roofline_conv`; fvcore's
    flop is one multiply-add): the best of ``repeats`` timings."""
    conv, flops = roofline_conv()
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            conv()
            times.append(time.perf_counter() - start)
    return flops / min(times) / 1e9


def bench_config(config: str, args, progress: Callable[[str], None]) -> Dict:
    trainers = {}
    for label in args.variants:
        cfg = build_cfg(config, label, args.out, args.opts)
        trainers[label] = build_trainer(cfg)
    images = cfg.SOLVER.IMS_PER_BATCH
    result = {"config": config, "images_per_batch": images, "models": {}}
    with EventStorage(0) as storage:
        for trainer in trainers.values():
            trainer.storage = storage
            trainer._trainer.storage = storage
        for label, trainer in trainers.items():
            progress(f"{config}: {label}: {args.warmup} warm-up steps")
            run_steps(trainer, args.warmup)
        windows = {label: [] for label in trainers}
        for w in range(args.windows):
            for label, trainer in trainers.items():
                windows[label].append(run_steps(trainer, args.window))
            progress(
                f"{config}: window {w + 1}/{args.windows}: "
                + ", ".join(f"{k} {v[-1] / args.window:.3f} s/it" for k, v in windows.items())
            )
        for label, trainer in trainers.items():
            progress(f"{config}: {label}: profiling {args.profile_steps} steps")
            result["models"][label] = model_result(trainer, windows[label], images, args)
    stock = result["models"][STOCK]
    for label, model in result["models"].items():
        # Per window pair (the same turn, so under about the same load): stock / row time.
        pairs = [b / a for a, b in zip(model["window_seconds"], stock["window_seconds"])]
        model["speedup"] = model["images_per_s"] / stock["images_per_s"]
        model["window_pair_speedups"] = pairs
        model["speedup_median_of_pairs"] = statistics.median(pairs)
    return result


def model_result(trainer: Trainer, window_seconds: List[float], images: int, args) -> Dict:
    """Throughput of one row from its window times, its step shares and its MACs."""
    shares = step_shares(trainer, args.profile_steps)
    macs = training_macs(trainer)
    median = statistics.median(window_seconds) / args.window
    cfg = trainer.cfg
    return {
        "backbone": cfg.MODEL.BACKBONE.NAME,
        "roi_heads": cfg.MODEL.ROI_HEADS.NAME if hasattr(trainer.model, "roi_heads") else "-",
        "channels_last": cfg.MODEL.CHANNELS_LAST,
        "amp": cfg.SOLVER.AMP.PRECISION if cfg.SOLVER.AMP.ENABLED else "",
        "window_seconds": window_seconds,
        "seconds_per_iteration": median,
        "images_per_s": images / median,
        "shares": shares,
        "forward_macs": macs,
        "step_gmacs_per_s": 3 * macs / median / 1e9,
    }


def markdown(results: Dict) -> str:
    roof = results["roofline_gmacs_per_s"]
    head = (
        "| config | model | img/s | s/iter | speed-up | GMAC/s (% of fp32 conv roofline) | "
        + " | ".join(COMPONENTS)
        + " |"
    )
    lines = [head, "|" + "---|" * (6 + len(COMPONENTS))]
    for r in results["configs"]:
        for label, m in r["models"].items():
            shares = " | ".join(f"{m['shares'][c] * 100:.0f}%" for c in COMPONENTS)
            lines.append(
                f"| {r['config']} | {label} ({m['backbone']}, {m['roi_heads']}) | "
                f"{m['images_per_s']:.2f} | {m['seconds_per_iteration']:.3f} | "
                f"{m['speedup']:.2f}x | "
                f"{m['step_gmacs_per_s']:.1f} ({m['step_gmacs_per_s'] / roof * 100:.0f}%) | "
                f"{shares} |"
            )
    lines.append("")
    for r in results["configs"]:
        for label, m in r["models"].items():
            if label == STOCK:
                continue
            pairs = ", ".join(f"{x:.2f}" for x in m["window_pair_speedups"])
            lines.append(
                f"- {r['config']}, {label}: speed-up over {STOCK} per window pair (run in the "
                f"same turn) {pairs}; median {m['speedup_median_of_pairs']:.2f}x."
            )
    lines.append("")
    lines.append(
        f"Throughput: median of {results['windows']} windows of {results['window']} training "
        f"iterations each (data loading included, as tools/train_net.py), the rows in turns in "
        f"one process after {results['warmup']} warm-up iterations each; "
        f"{results['threads']} torch threads. Speed-up = img/s / {STOCK}'s. Shares: "
        f"torch.profiler over {results['profile_steps']} steps. Conv roofline "
        f"{roof:.0f} GMAC/s (one 256-channel 3x3 conv in float32); step GMAC/s = 3 x forward "
        "conv+linear MACs / step time."
    )
    return "\n".join(lines) + "\n"


def new_results(args: argparse.Namespace, argv: Optional[List[str]], roofline: float) -> Dict:
    """The results before any config is timed: the settings, the conv roofline (GMAC/s), and the
    commit of the code and the command that make them (README's table names both)."""
    return {
        "commit": git_commit(),
        "command": command_line("benchmarks/bench_train.py", argv),
        "threads": args.threads,
        "windows": args.windows,
        "window": args.window,
        "warmup": args.warmup,
        "profile_steps": args.profile_steps,
        "opts": args.opts,
        "roofline_gmacs_per_s": roofline,
        "configs": [],
    }


def main(argv: List[str] = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["faster_rcnn_R18_FPN"],
        help="names of configs/Synthetic/*.yaml (e.g. faster_rcnn_R18_PANet retinanet_R18_FPN)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help=f"rows to time (default: all); {STOCK!r}, the baseline, is always timed",
    )
    parser.add_argument("--windows", type=int, default=6, help="timed windows per model")
    parser.add_argument("--window", type=int, default=4, help="iterations per window")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per model")
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="output/bench_train")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    args.variants = [STOCK] + [v for v in args.variants if v != STOCK]
    torch.set_num_threads(args.threads)
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    logging.getLogger("fpn_variants").setLevel(logging.WARNING)

    def progress(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    progress("conv roofline")
    results = new_results(args, argv, roofline_gmacs())
    for config in args.configs:
        results["configs"].append(bench_config(config, args, progress))
    table = markdown(results)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table)
    return results


if __name__ == "__main__":
    main()
