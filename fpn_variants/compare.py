"""Side-by-side comparison of necks under one recipe: cost and COCO AP, one cell per variant.

A *cell* is one (detector, neck) pair built from ``<config_dir>/<detector>_R18_<NECK>.yaml``. For
each cell the run measures parameters, FLOPs, CPU latency, the peak memory of a training step and
the training throughput, then (unless ``train=False``) trains with the shared schedule and seed
and evaluates COCO AP. Every finished cell is written to ``<out>/cells/<cell>.json`` at once, so
an interrupted comparison resumes where it stopped (a cell's training also resumes from its last
checkpoint). ``table.md``, ``results.csv``, ``results.json`` and the plots are rebuilt from the
cell files at the end.
"""

import csv
import json
import logging
import math
import multiprocessing
import os
import resource
import time
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from .analysis import count_flops, count_neck_flops, count_parameters, interleaved_latency
from .config import add_fpn_variants_config
from .engine import Trainer
from .io import atomic_write_text

__all__ = ["DETECTORS", "NECKS", "cell_config", "compare", "measure_costs", "write_reports"]

logger = logging.getLogger(__name__)

# Short names used on the command line -> (label, config file suffix).
NECKS = {
    "fpn": ("FPN", "FPN"),
    "panet": ("PANet", "PANet"),
    "bifpn": ("BiFPN", "BiFPN"),
    "nasfpn": ("NAS-FPN", "NASFPN"),
}
DETECTORS = {"faster_rcnn": "Faster R-CNN", "retinanet": "RetinaNet", "mask_rcnn": "Mask R-CNN"}
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Cost columns also given as ratios to the FPN cell of the same detector.
RATIO_COLUMNS = ("neck_params", "gflops", "neck_latency_ms", "latency_ms", "train_peak_mb")


def cell_name(detector: str, neck: str) -> str:
    return f"{detector}_{neck}"


def cell_config(
    detector: str, neck: str, config_dir: str, out: str, opts: Sequence[str] = ()
) -> CfgNode:
    """The config of one cell, its OUTPUT_DIR under ``out``; ``opts`` apply to every cell."""
    if detector not in DETECTORS:
        raise ValueError(f"detector {detector!r} is not one of {list(DETECTORS)}")
    if neck not in NECKS:
        raise ValueError(f"neck {neck!r} is not one of {list(NECKS)}")
    path = os.path.join(config_dir, f"{detector}_R18_{NECKS[neck][1]}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config for {detector} x {neck}: {path} does not exist")
    cfg = add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(path, allow_unsafe=False)
    cfg.merge_from_list(list(opts))
    cfg.OUTPUT_DIR = os.path.join(out, "runs", cell_name(detector, neck))
    cfg.freeze()
    return cfg


def _sample_image(cfg: CfgNode) -> Dict:
    """The first validation image, resized as at test time (a model input dict)."""
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    return next(iter(loader))[0]


def measure_costs(cfg: CfgNode, repeats: int = 10) -> Dict:
    """Parameters, fvcore GFLOPs, eval latency (neck and full model) at the first validation
    image; peak memory and throughput of training steps (in a child process)."""
    model = build_model(cfg).eval()
    sample = _sample_image(cfg)
    image = sample["image"]
    with torch.no_grad():
        total_flops = count_flops(model, ([sample],), FlopCountAnalysis)
        features = model.backbone.bottom_up(model.preprocess_image([sample]).tensor)
        neck_flops = count_neck_flops(model.backbone, features)
        stats = interleaved_latency(
            {
                "neck": lambda: model.backbone.forward_neck(features),
                "model": lambda: model([sample]),
            },
            repeats=repeats,
        )
    return {
        "input_size": [int(image.shape[-2]), int(image.shape[-1])],
        "threads": torch.get_num_threads(),
        "params": count_parameters(model),
        "neck_params": count_parameters(model.backbone, exclude_prefix="bottom_up."),
        "gflops": total_flops / 1e9,
        "neck_gflops": neck_flops / 1e9,
        "neck_latency_ms": stats["neck"]["median"] * 1e3,
        "neck_latency_min_ms": stats["neck"]["min"] * 1e3,
        "latency_ms": stats["model"]["median"] * 1e3,
        "latency_min_ms": stats["model"]["min"] * 1e3,
        **_training_step_costs(cfg),
    }


def _training_step_costs(cfg: CfgNode, steps: int = 3) -> Dict:
    """Peak memory growth and images/s of training steps on one training batch, measured in a
    fresh process (the peak resident size of a process only ever grows, so each cell needs its
    own). The batch is loaded here: the child needs no dataset registration."""
    loader_cfg = cfg.clone()
    loader_cfg.defrost()
    loader_cfg.DATALOADER.NUM_WORKERS = 0  # loading is not timed
    batch = next(iter(Trainer.build_train_loader(loader_cfg)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        args = (cfg.dump(), batch, steps, torch.get_num_threads())
        return pool.apply(_train_steps_in_child, args)


def _train_steps_in_child(cfg_yaml: str, batch: List[Dict], steps: int, threads: int) -> Dict:
    import fpn_variants  # noqa: F401  registers the necks in the child

    torch.set_num_threads(threads)
    cfg = add_fpn_variants_config(get_cfg())
    cfg.merge_from_other_cfg(CfgNode.load_cfg(cfg_yaml))
    seed_all_rng(cfg.SEED)
    model = Trainer.build_model(cfg).train()
    optimizer = Trainer.build_optimizer(cfg, model)
    baseline_kb = _resident_kb()
    start = None
    with EventStorage(0):
        for step in range(steps + 1):
            if step == 1:  # the first step allocates optimizer state and warms kernels up
                start = time.perf_counter()
            losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "train_peak_mb": max(peak_kb - baseline_kb, 0) / 1024,
        "train_images_per_s": steps * len(batch) / elapsed,
    }


def _resident_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def train_and_evaluate(cfg: CfgNode) -> Dict:
    """Train (resuming from the cell's last checkpoint if any), then COCO-evaluate."""
    seed_all_rng(cfg.SEED)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    with open(os.path.join(cfg.OUTPUT_DIR, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    results = trainer.train()
    # DefaultTrainer.test returns {task: {metric: value}} for one test dataset.
    metrics = {
        task: {k: values.get(k, float("nan")) for k in COCO_METRICS}
        for task, values in (results or {}).items()
    }
    # Training iterations alone, as tools/train_net.py logs them (engine.TrainingSpeed).
    speed = trainer.training_speed.summary()
    return {
        "metrics": metrics,
        "train_time_s": speed["train_time_s"],
        "train_images_per_s": speed["images_per_s"],
        "iterations": cfg.SOLVER.MAX_ITER,
    }


def compare(
    detectors: Sequence[str],
    necks: Sequence[str],
    out: str,
    config_dir: str = "configs/Synthetic",
    opts: Sequence[str] = (),
    train: bool = True,
    repeats: int = 10,
) -> List[Dict]:
    """Run every missing cell, then write the reports. Returns all cell records."""
    setup_logger(out, name="fpn_variants")
    setup_logger(out, name="detectron2")
    cells = [(d, n) for d in detectors for n in necks]
    # Generate the data once, before any timing.
    cfg0 = cell_config(cells[0][0], cells[0][1], config_dir, out, opts)
    for name in cfg0.DATASETS.TRAIN + cfg0.DATASETS.TEST:
        DatasetCatalog.get(name)
    records = []
    for detector, neck in tqdm(cells, desc="comparison", unit="cell"):
        path = os.path.join(out, "cells", cell_name(detector, neck) + ".json")
        record = _read_cell(path)
        if record is None or (train and "metrics" not in record):
            cfg = cell_config(detector, neck, config_dir, out, opts)
            logger.info(f"cell {cell_name(detector, neck)}: measuring costs")
            record = {
                "detector": detector,
                "neck": neck,
                "config": os.path.join(config_dir, f"{detector}_R18_{NECKS[neck][1]}.yaml"),
                "costs": measure_costs(cfg, repeats),
            }
            if train:
                logger.info(f"cell {cell_name(detector, neck)}: training")
                record.update(train_and_evaluate(cfg))
                record["costs"]["train_images_per_s_run"] = record.pop("train_images_per_s")
            atomic_write_text(path, json.dumps(record, indent=2))
        else:
            logger.info(f"cell {cell_name(detector, neck)}: done earlier, kept")
        records.append(record)
    write_reports(records, out)
    return records


def _read_cell(path: str) -> Optional[Dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _rows(records: List[Dict]) -> List[Dict]:
    """One flat row per cell, with cost ratios to the FPN cell of the same detector."""
    rows = []
    for rec in records:
        row = {"detector": rec["detector"], "neck": NECKS[rec["neck"]][0], **rec["costs"]}
        row.pop("input_size", None)
        row["input_size"] = "x".join(str(v) for v in rec["costs"]["input_size"])
        for task, values in rec.get("metrics", {}).items():
            prefix = "" if task == "bbox" else "mask_"
            row.update({prefix + k: v for k, v in values.items()})
        if "train_time_s" in rec:
            row["train_time_min"] = rec["train_time_s"] / 60
        rows.append(row)
    for row in rows:
        base = next(
            (r for r in rows if r["detector"] == row["detector"] and r["neck"] == "FPN"), None
        )
        for col in RATIO_COLUMNS:
            if base and base.get(col):
                row[col + "_vs_fpn"] = row[col] / base[col]
    return rows


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_reports(records: List[Dict], out: str) -> None:
    """table.md, results.csv, results.json and the plots, from the cell records."""
    rows = _rows(records)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(rows, indent=2))
    columns = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("detector", "neck"), k))
    tmp = os.path.join(out, "results.csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, os.path.join(out, "results.csv"))
    atomic_write_text(os.path.join(out, "table.md"), render_table(rows))
    _plot(rows, out)


def render_table(rows: List[Dict]) -> str:
    """The comparison as Markdown: one table per detector, FPN first."""
    lines = []
    for detector in dict.fromkeys(r["detector"] for r in rows):
        sub = [r for r in rows if r["detector"] == detector]
        first = sub[0]
        lines += [
            f"### {DETECTORS[detector]}",
            "",
            f"Input {first['input_size']}, {first['threads']} CPU threads; FLOPs by fvcore "
            "(1 multiply-add = 1 flop); latency = median of interleaved runs, batch 1; "
            "(x) = ratio to FPN; train img/s = the training iterations alone (data loading, "
            "forward, backward, optimizer step; after the first 3; no start-up, evaluation, "
            "PreciseBN or checkpoint writes), as tools/train_net.py logs them.",
            "",
            "| neck | neck params (M) | GFLOPs | neck latency (ms) | latency (ms) | train peak "
            "mem (MB) | train img/s | AP | AP50 | AP75 | AP_S | AP_M | AP_L |"
            + (" mask AP |" if "mask_AP" in first else ""),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            + ("---|" if "mask_AP" in first else ""),
        ]
        for r in sub:
            cells = [
                r["neck"],
                _ratio(r, "neck_params", r["neck_params"] / 1e6, 2),
                _ratio(r, "gflops", r["gflops"], 1),
                _ratio(r, "neck_latency_ms", r["neck_latency_ms"], 0),
                _ratio(r, "latency_ms", r["latency_ms"], 0),
                _ratio(r, "train_peak_mb", r["train_peak_mb"], 0),
                # the training run's iterations when it ran, else 3 steps on one batch
                _fmt(r.get("train_images_per_s_run", r.get("train_images_per_s")), 1),
            ] + [_fmt(r.get(k)) for k in COCO_METRICS]
            if "mask_AP" in first:
                cells.append(_fmt(r.get("mask_AP")))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _ratio(row: Dict, column: str, value: float, digits: int) -> str:
    ratio = row.get(column + "_vs_fpn")
    text = _fmt(float(value), digits)
    return text if ratio is None or row["neck"] == "FPN" else f"{text} ({ratio:.2f}x)"


def _plot(rows: List[Dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rows if "AP" in r]
    if not trained:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for detector in dict.fromkeys(r["detector"] for r in trained):
        sub = [r for r in trained if r["detector"] == detector]
        ax.plot([r["gflops"] for r in sub], [r["AP"] for r in sub], "o", label=DETECTORS[detector])
        for r in sub:
            xy = (r["gflops"], r["AP"])
            ax.annotate(r["neck"], xy, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("GFLOPs (fvcore, whole model)")
    ax.set_ylabel("box AP")
    ax.set_title("AP vs cost")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ap_vs_gflops.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r['neck']}\n{DETECTORS[r['detector']]}" for r in trained]
    width = 0.27
    for i, key in enumerate(("APs", "APm", "APl")):
        ax.bar(
            [x + (i - 1) * width for x in range(len(trained))],
            [r.get(key, float("nan")) for r in trained],
            width,
            label=key.replace("AP", "AP_").upper().replace("AP_", "AP_"),
        )
    ax.set_xticks(range(len(trained)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("box AP")
    ax.set_title("AP by object size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ap_by_size.png"), dpi=120)
    plt.close(fig)
