"""Side-by-side comparison of necks under one recipe: costs and COCO AP over several seeds.

A *cell* is one (detector, neck) pair, built from ``<config_dir>/<detector>_R18_<NECK>.yaml``; a
*run* is one seed of a cell. Each run is ``tools/train_net.py`` in a fresh process (``python -m
fpn_variants.engine``) with the cell's config, the shared overrides, ``SEED <seed>`` and
``OUTPUT_DIR <out>/runs/<cell>/seed<seed>``: its weights and AP are those of that command, bit for
bit, whatever ran before it. Costs (parameters, FLOPs, latency, memory) are measured once per
cell. Each finished cell cost and run is saved in ``<out>/cells/<cell>.json`` at once, so an
interrupted comparison resumes where it stopped (an interrupted run continues from its last
checkpoint). The reports (``table.md``, ``results.csv``, ``results.json`` and the plots) give the
mean and standard deviation over seeds, and each neck's difference to FPN with a 95% confidence
interval paired by seed (same seed: same initial bottom-up weights and same data order).
"""

import csv
import json
import logging
import math
import multiprocessing
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from io import StringIO
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger
from scipy import stats

from .analysis import count_flops, count_neck_flops, count_parameters, interleaved_latency
from .config import add_fpn_variants_config
from .data import register_coco_instances_from_path
from .engine import SPLITS, Trainer, apply_dataset_names
from .io import atomic_write_text
from .model_zoo.metrics import read_training_metrics
from .optimize import optimize_for_inference
from .registry import NECK_REGISTRY

__all__ = [
    "DETECTORS",
    "NECKS",
    "PAPER_NECKS",
    "cell_config",
    "compare",
    "late_gain",
    "measure_costs",
    "paired_difference",
    "summarize",
    "train_command",
    "write_reports",
]

logger = logging.getLogger(__name__)

# Short names used on the command line -> (label, config file suffix), from the neck registry.
NECKS = {row.key: (row.label, row.config_suffix) for row in NECK_REGISTRY}
# The necks of the papers (the default rows); the others are FPN-paper baselines.
PAPER_NECKS = tuple(row.key for row in NECK_REGISTRY if row.paper)
DETECTORS = {"faster_rcnn": "Faster R-CNN", "retinanet": "RetinaNet", "mask_rcnn": "Mask R-CNN"}
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Metrics whose difference to FPN the table shows, with its confidence interval.
DIFFERENCE_METRICS = ("AP", "APs")
# Part of the schedule over which the AP gained is reported (plateau criterion).
LATE_FRACTION = 0.2
# Cost columns also given as ratios to the FPN cell of the same detector.
RATIO_COLUMNS = ("neck_params", "gflops", "neck_latency_ms", "latency_ms", "train_peak_mb")
BASELINE = "fpn"


def cell_name(detector: str, neck: str) -> str:
    return f"{detector}_{neck}"


def cell_config(
    detector: str,
    neck: str,
    config_dir: str,
    out: str,
    opts: Sequence[str] = (),
    datasets: Optional[Dict[str, Sequence[Sequence[str]]]] = None,
) -> CfgNode:
    """The config of one cell as ``tools/train_net.py`` builds it: the cell's file, the datasets
    given by path (registered), then ``opts`` (shared by every cell); OUTPUT_DIR under ``out``."""
    if detector not in DETECTORS:
        raise ValueError(f"detector {detector!r} is not one of {list(DETECTORS)}")
    if neck not in NECKS:
        raise ValueError(f"neck {neck!r} is not one of {list(NECKS)}")
    path = os.path.join(config_dir, f"{detector}_R18_{NECKS[neck][1]}.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no config for {detector} x {neck}: {path} does not exist")
    cfg = add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(path, allow_unsafe=False)
    names = {split: [entry[0] for entry in (datasets or {}).get(split, ())] for split in SPLITS}
    apply_dataset_names(cfg, names)
    cfg.merge_from_list(list(opts))
    cfg.OUTPUT_DIR = os.path.join(out, "runs", cell_name(detector, neck))
    cfg.freeze()
    return cfg


def _sample_image(cfg: CfgNode) -> Dict:
    """The first validation image, resized as at test time (a model input dict)."""
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    return next(iter(loader))[0]


def measure_costs(cfg: CfgNode, repeats: int = 10) -> Dict:
    """Parameters, fvcore GFLOPs (whole model, bottom-up network, neck), eval latency (neck and
    full model) at the first validation image; peak memory and throughput of training steps (in
    a child process)."""
    model = build_model(cfg).eval()
    sample = _sample_image(cfg)
    image = sample["image"]
    with torch.no_grad():
        total_flops = count_flops(model, ([sample],), FlopCountAnalysis)
        images = model.preprocess_image([sample]).tensor
        bottom_up_flops = count_flops(model.backbone.bottom_up, (images,))
        features = model.backbone.bottom_up(images)
        neck_flops = count_neck_flops(model.backbone, features)
        fast = optimize_for_inference(model)
        stats = interleaved_latency(
            {
                "neck": lambda: fast.backbone.forward_neck(features),
                "model": lambda: fast([sample]),
            },
            repeats=repeats,
        )
    return {
        "input_size": [int(image.shape[-2]), int(image.shape[-1])],
        "threads": torch.get_num_threads(),
        "params": count_parameters(model),
        "neck_params": count_parameters(model.backbone, exclude_prefix="bottom_up."),
        "gflops": total_flops / 1e9,
        "bottom_up_gflops": bottom_up_flops / 1e9,
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


def run_dir(out: str, detector: str, neck: str, seed: int) -> str:
    return os.path.join(out, "runs", cell_name(detector, neck), f"seed{seed}")


def train_command(
    config_file: str,
    output_dir: str,
    seed: int,
    opts: Sequence[str] = (),
    datasets: Optional[Dict[str, Sequence[Sequence[str]]]] = None,
) -> List[str]:
    """The ``tools/train_net.py`` arguments of one run (``--resume``: an interrupted run
    continues from its last checkpoint). ``datasets``: {"train"/"test": [(name, json, root)]}."""
    args = ["--config-file", config_file, "--resume"]
    for split, entries in (datasets or {}).items():
        for entry in entries:
            args += [f"--dataset-{split}", *entry]
    return args + [*opts, "SEED", str(seed), "OUTPUT_DIR", output_dir]


def train_in_fresh_process(args: Sequence[str], threads: int) -> Dict:
    """Run ``tools/train_net.py args`` in a new Python process (``threads`` intra-op threads)
    and read its final evaluation and training time from OUTPUT_DIR/metrics.json."""
    output_dir = args[args.index("OUTPUT_DIR", len(args) - 2) + 1]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "fpn_variants.engine", *args]
    returncode = subprocess.run(cmd, env=env).returncode
    if returncode != 0:
        raise RuntimeError(
            f"training run failed (exit code {returncode}): {shlex.join(cmd)}; its error is "
            f"printed above (and in {os.path.join(output_dir, 'log.txt')} once the run started). "
            "Rerun the comparison to resume it."
        )
    metrics_file = os.path.join(output_dir, "metrics.json")
    history = _history(metrics_file, ("train_time_s", "train_images_per_s", "bbox/AP"))
    return {
        "metrics": read_training_metrics(metrics_file),
        # the training iterations alone, as engine.TrainingSpeed logs them
        "train_time_s": history["train_time_s"][-1][1] if history["train_time_s"] else None,
        "train_images_per_s": (
            history["train_images_per_s"][-1][1] if history["train_images_per_s"] else None
        ),
        # box AP of every evaluation: [metrics.json "iteration", AP]
        "ap_history": history["bbox/AP"],
    }


def _history(metrics_file: str, keys: Sequence[str]) -> Dict[str, List[List[float]]]:
    """{key: [[iteration, value], ...]} of ``keys`` in a Detectron2 metrics.json (one JSON
    object per line; a line cut by an interrupted run is skipped)."""
    found = {key: [] for key in keys}
    with open(metrics_file, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            for key in keys:
                if isinstance(record, dict) and record.get(key) is not None:
                    found[key].append([record.get("iteration"), record[key]])
    return found


def compare(
    detectors: Sequence[str],
    necks: Sequence[str],
    out: str,
    config_dir: str = "configs/Synthetic",
    opts: Sequence[str] = (),
    train: bool = True,
    repeats: int = 10,
    seeds: Optional[Sequence[int]] = None,
    datasets: Optional[Dict[str, Sequence[Sequence[str]]]] = None,
    threads: Optional[int] = None,
    jobs: int = 1,
) -> List[Dict]:
    """Measure every cell's costs, then train every missing run, then write the reports.

    Args:
        seeds: the seeds of each cell; default: the config's SEED (one run per cell).
        datasets: COCO-format data by path, as ``tools/train_net.py --dataset-train/-test``
            ({"train"/"test": [(name, json, image root)]}); default: the configs' datasets.
        threads: intra-op threads of each run and of the cost measurements (default: this
            process's divided by ``jobs``).
        jobs: runs trained at the same time, each in its own process. The costs are measured
            before any training starts, one cell at a time.

    Returns:
        list[dict]: one record per cell: detector, neck, config, costs and {seed: run}.
    """
    setup_logger(out, name="fpn_variants")
    setup_logger(out, name="detectron2")
    threads = threads or max(1, torch.get_num_threads() // jobs)
    for entries in (datasets or {}).values():
        for name, json_file, image_root in entries:
            register_coco_instances_from_path(name, json_file, image_root)
    cells = [(d, n) for d in detectors for n in necks]
    # Generate or read the data once, before any timing.
    cfg0 = cell_config(cells[0][0], cells[0][1], config_dir, out, opts, datasets)
    for name in cfg0.DATASETS.TRAIN + cfg0.DATASETS.TEST:
        DatasetCatalog.get(name)
    seeds = list(seeds) if seeds else [cfg0.SEED]
    records, missing = [], []
    for index, (detector, neck) in enumerate(cells, 1):
        name = cell_name(detector, neck)
        path = os.path.join(out, "cells", name + ".json")
        cfg = cell_config(detector, neck, config_dir, out, opts, datasets)
        record = _read_cell(path, opts, datasets) or {
            "detector": detector,
            "neck": neck,
            "config": os.path.join(config_dir, f"{detector}_R18_{NECKS[neck][1]}.yaml"),
            "opts": list(opts),
            "datasets": _given_data(datasets),
            "runs": {},
        }
        if "costs" not in record:
            logger.info(f"cell {index}/{len(cells)} {name}: measuring costs")
            record["costs"] = measure_costs(cfg, repeats)
            atomic_write_text(path, json.dumps(record, indent=2))
        records.append(record)
        runs = [seed for seed in seeds if str(seed) not in record["runs"]] if train else []
        missing += [(record, path, cfg.SOLVER.MAX_ITER, seed) for seed in runs]
    _train_missing_runs(missing, out, opts, datasets, threads, jobs)
    write_reports(records, out)
    return records


def _train_missing_runs(
    missing: List[Tuple[Dict, str, int, int]],
    out: str,
    opts: Sequence[str],
    datasets: Optional[Dict[str, Sequence[Sequence[str]]]],
    threads: int,
    jobs: int,
) -> None:
    """Train each (cell record, cell file, MAX_ITER, seed) run in a fresh process, ``jobs`` at a
    time, and save each finished run in its cell file at once."""
    saving = threading.Lock()

    def train(number: int, item: Tuple[Dict, str, int, int]) -> None:
        record, path, max_iter, seed = item
        output_dir = run_dir(out, record["detector"], record["neck"], seed)
        args = train_command(record["config"], output_dir, seed, opts, datasets)
        name = cell_name(record["detector"], record["neck"])
        logger.info(f"run {number}/{len(missing)}: {name}, seed {seed}, in a new process")
        run = train_in_fresh_process(args, threads)
        # iterations done at each evaluation: a periodic one is logged at the index of its last
        # iteration, the final one at MAX_ITER
        run["ap_history"] = [[min(it + 1, max_iter), ap] for it, ap in run["ap_history"]]
        run.update(
            iterations=max_iter,
            command=f"OMP_NUM_THREADS={threads} "
            + shlex.join(["python", "tools/train_net.py", *args]),
        )
        with saving:
            record["runs"][str(seed)] = run
            atomic_write_text(path, json.dumps(record, indent=2))

    if jobs == 1:
        for number, item in enumerate(missing, 1):
            train(number, item)
        return
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(train, number, item) for number, item in enumerate(missing, 1)]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:  # a failed run or Ctrl-C: the runs under way end, no other starts
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _given_data(datasets: Optional[Dict[str, Sequence[Sequence[str]]]]) -> Dict:
    """``datasets`` as saved in a cell file: {split: [[name, json, image root], ...]}."""
    return {
        split: [list(e) for e in entries] for split, entries in (datasets or {}).items() if entries
    }


def _read_cell(
    path: str, opts: Sequence[str], datasets: Optional[Dict[str, Sequence[Sequence[str]]]]
) -> Optional[Dict]:
    """The cell saved at ``path`` by an earlier comparison, if any; an error if that comparison
    had other config overrides or data (its runs would be mixed with this one's)."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    ours = {"opts": list(opts), "datasets": _given_data(datasets)}
    theirs = {key: record.get(key, ours[key]) for key in ours}  # cells saved before these keys
    if theirs != ours:
        raise ValueError(
            f"{path} holds the runs of a comparison with config overrides {theirs['opts']} and "
            f"data {theirs['datasets'] or 'of the configs'}, not {ours['opts']} and "
            f"{ours['datasets'] or 'of the configs'}: give this comparison another --out, or "
            "the same overrides and data to resume that one."
        )
    return record


def paired_difference(values: Dict[str, float], baseline: Dict[str, float]) -> Dict:
    """Mean of ``values[seed] - baseline[seed]`` over the seeds both have, with its 95% Student-t
    confidence interval (None below 2 seeds); "significant" when the interval excludes 0."""
    seeds = sorted(set(values) & set(baseline), key=int)
    diffs = np.array([values[s] - baseline[s] for s in seeds], dtype=float)
    result = {"mean": float(diffs.mean()) if len(diffs) else None, "n": len(diffs)}
    result.update(ci95=None, significant=None)
    if len(diffs) >= 2:
        half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
        low, high = result["mean"] - half, result["mean"] + half
        result.update(ci95=[low, high], significant=bool(low > 0 or high < 0))
    return result


def late_gain(run: Dict, fraction: float = LATE_FRACTION) -> Optional[float]:
    """Box AP a run gained over the last ``fraction`` of its schedule: its final AP minus the AP
    of its evaluation after (1 - fraction) of the iterations (TEST.EVAL_PERIOD set to that);
    None without that evaluation. The plateau criterion of a converged schedule."""
    history = {int(it): ap for it, ap in run.get("ap_history", [])}
    iterations = run.get("iterations")
    mark = round((1 - fraction) * (iterations or 0))
    if mark not in history or iterations not in history:
        return None
    return history[iterations] - history[mark]


def _metric_by_seed(record: Dict, task: str, metric: str) -> Dict[str, float]:
    """{seed: value} of one metric over the finished runs of a cell (NaN/None left out)."""
    values = {}
    for seed, run in record.get("runs", {}).items():
        value = run["metrics"].get(task, {}).get(metric)
        if value is not None and math.isfinite(value):
            values[seed] = value
    return values


def summarize(records: List[Dict]) -> List[Dict]:
    """One row per cell: its costs (with ratios to the FPN cell of the same detector), mean and
    standard deviation of every metric over seeds, the per-seed values, and the paired
    difference of :data:`DIFFERENCE_METRICS` to FPN."""
    rows = []
    for rec in records:
        costs = dict(rec["costs"])
        row = {"detector": rec["detector"], "neck": NECKS[rec["neck"]][0], "key": rec["neck"]}
        row.update({k: v for k, v in costs.items() if k != "input_size"})
        row["input_size"] = "x".join(str(v) for v in costs["input_size"])
        runs = rec.get("runs", {})
        row["seeds"] = sorted(runs, key=int)
        speeds = [r["train_images_per_s"] for r in runs.values() if r.get("train_images_per_s")]
        row["train_images_per_s_run"] = float(np.mean(speeds)) if speeds else None
        gains = [late_gain(run) for run in runs.values()]
        if gains and all(g is not None for g in gains):
            row["AP_late_gain"] = float(np.mean(gains))
            row["AP_late_gain_std"] = float(np.std(gains, ddof=1)) if len(gains) > 1 else None
        tasks = {task for run in runs.values() for task in run["metrics"]}
        for task in sorted(tasks):
            prefix = "" if task == "bbox" else "mask_"
            for metric in COCO_METRICS:
                by_seed = _metric_by_seed(rec, task, metric)
                values = list(by_seed.values())
                row[prefix + metric] = float(np.mean(values)) if values else None
                row[prefix + metric + "_std"] = (
                    float(np.std(values, ddof=1)) if len(values) > 1 else None
                )
                row[prefix + metric + "_by_seed"] = by_seed
        rows.append(row)
    for row, rec in zip(rows, records):
        base = next(
            (
                (r, b)
                for r, b in zip(rows, records)
                if r["detector"] == row["detector"] and r["key"] == BASELINE
            ),
            None,
        )
        if base is None:
            continue
        for col in RATIO_COLUMNS:
            if base[0].get(col):
                row[col + "_vs_fpn"] = row[col] / base[0][col]
        if row["key"] != BASELINE:
            row["vs_fpn"] = {
                m: paired_difference(
                    _metric_by_seed(rec, "bbox", m), _metric_by_seed(base[1], "bbox", m)
                )
                for m in DIFFERENCE_METRICS
            }
    return rows


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mean_std(row: Dict, key: str) -> str:
    mean, std = row.get(key), row.get(key + "_std")
    if mean is None:
        return "–"
    return f"{mean:.1f} ± {std:.1f}" if std is not None else f"{mean:.1f}"


def _difference(row: Dict, metric: str) -> str:
    diff = row.get("vs_fpn", {}).get(metric)
    if diff is None or diff["mean"] is None:
        return "–" if row["key"] != BASELINE else "(baseline)"
    text = f"{diff['mean']:+.1f}"
    if diff["ci95"] is None:
        return text
    low, high = diff["ci95"]
    return f"{text} [{low:+.1f}, {high:+.1f}]" + ("" if diff["significant"] else " n.s.")


def _csv_rows(records: List[Dict], rows: List[Dict]) -> List[Dict]:
    """One row per run (cell x seed): the cell's costs and the run's metrics and speed."""
    out = []
    for rec, row in zip(records, rows):
        costs = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
        costs = {k: v for k, v in costs.items() if k.split("_")[0] not in COCO_METRICS}
        for seed, run in sorted(rec.get("runs", {}).items(), key=lambda kv: int(kv[0])):
            line = {**costs, "seed": int(seed), "train_time_s": run["train_time_s"]}
            line["train_images_per_s_run"] = run.get("train_images_per_s")
            for task, values in run["metrics"].items():
                prefix = "" if task == "bbox" else "mask_"
                line.update({prefix + k: v for k, v in values.items()})
            out.append(line)
        if not rec.get("runs"):
            out.append(costs)
    return out


def write_reports(records: List[Dict], out: str) -> None:
    """table.md, results.csv (one row per run), results.json (one row per cell, with the
    per-seed values and the differences to FPN) and the plots, from the cell records."""
    rows = summarize(records)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(rows, indent=2))
    lines = _csv_rows(records, rows)
    columns = sorted(
        {k for r in lines for k in r},
        key=lambda k: (k not in ("detector", "neck", "seed"), ("detector", "neck", "seed", k)),
    )
    text = StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(lines)
    atomic_write_text(os.path.join(out, "results.csv"), text.getvalue())
    atomic_write_text(os.path.join(out, "table.md"), render_table(rows))
    _plot(rows, out)


def render_table(rows: List[Dict]) -> str:
    """The comparison as Markdown: one table per detector, FPN first."""
    lines = []
    for detector in dict.fromkeys(r["detector"] for r in rows):
        sub = [r for r in rows if r["detector"] == detector]
        first = sub[0]
        seeds = sorted({s for r in sub for s in r["seeds"]}, key=int)
        masks = any(r.get("mask_AP") is not None for r in sub)
        late = any(r.get("AP_late_gain") is not None for r in sub)
        lines += [
            f"### {DETECTORS[detector]}",
            "",
            f"Input {first['input_size']}, {first['threads']} CPU threads; {len(seeds)} seed(s) "
            f"per neck ({', '.join(seeds) or 'none'}), each run trained in its own process; "
            "AP = mean ± standard deviation over seeds; Δ = difference to FPN paired by seed, "
            "with its 95% confidence interval (n.s.: the interval contains 0)"
            + ("; AP gain, last 20% = final AP - AP after 80% of the iterations" if late else "")
            + ". FLOPs by fvcore (1 multiply-add = 1 flop); neck share = neck FLOPs / bottom-up "
            "FLOPs; latency = median of interleaved runs, batch 1; (x) = ratio to FPN; train "
            "img/s = the training iterations alone (data loading, forward, backward, optimizer "
            "step; after the first 3; no start-up, evaluation, PreciseBN or checkpoint writes), "
            "as tools/train_net.py logs them.",
            "",
            "| neck | neck params (M) | GFLOPs | neck share | neck latency (ms) | latency (ms) "
            "| train peak mem (MB) | train img/s | AP | ΔAP | AP50 | AP75 | AP_S | ΔAP_S | AP_M "
            "| AP_L |" + (" mask AP |" if masks else "") + (" AP gain, last 20% |" if late else ""),
            "|---" * (16 + masks + late) + "|",
        ]
        for r in sub:
            share = (
                r.get("neck_gflops", 0) / r["bottom_up_gflops"]
                if r.get("bottom_up_gflops")
                else None
            )
            cells = [
                r["neck"],
                _ratio(r, "neck_params", r["neck_params"] / 1e6, 2),
                _ratio(r, "gflops", r["gflops"], 1),
                "–" if share is None else f"{share * 100:.1f}%",
                _ratio(r, "neck_latency_ms", r["neck_latency_ms"], 0),
                _ratio(r, "latency_ms", r["latency_ms"], 0),
                _ratio(r, "train_peak_mb", r["train_peak_mb"], 0),
                _fmt(r.get("train_images_per_s_run") or r.get("train_images_per_s"), 1),
                _mean_std(r, "AP"),
                _difference(r, "AP"),
                _mean_std(r, "AP50"),
                _mean_std(r, "AP75"),
                _mean_std(r, "APs"),
                _difference(r, "APs"),
                _mean_std(r, "APm"),
                _mean_std(r, "APl"),
            ]
            if masks:
                cells.append(_mean_std(r, "mask_AP"))
            if late:
                cells.append(_mean_std(r, "AP_late_gain"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _ratio(row: Dict, column: str, value: float, digits: int) -> str:
    ratio = row.get(column + "_vs_fpn")
    text = _fmt(float(value), digits)
    return text if ratio is None or row["key"] == BASELINE else f"{text} ({ratio:.2f}x)"


def _plot(rows: List[Dict], out: str) -> None:
    # Imported here (heavy, and its backend must be chosen before pyplot is imported).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rows if r.get("AP") is not None]
    if not trained:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for detector in dict.fromkeys(r["detector"] for r in trained):
        sub = [r for r in trained if r["detector"] == detector]
        ax.errorbar(
            [r["gflops"] for r in sub],
            [r["AP"] for r in sub],
            yerr=[r.get("AP_std") or 0.0 for r in sub],
            fmt="o",
            capsize=3,
            label=DETECTORS[detector],
        )
        for r in sub:
            ax.annotate(
                r["neck"], (r["gflops"], r["AP"]), xytext=(4, 4), textcoords="offset points"
            )
    ax.set_xlabel("GFLOPs (fvcore, whole model)")
    ax.set_ylabel("box AP (mean ± std over seeds)")
    ax.set_title("AP vs cost")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ap_vs_gflops.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(trained)), 4))
    labels = [f"{r['neck']}\n{DETECTORS[r['detector']]}" for r in trained]
    width = 0.27
    for i, (key, label) in enumerate((("APs", "AP_S"), ("APm", "AP_M"), ("APl", "AP_L"))):
        ax.bar(
            [x + (i - 1) * width for x in range(len(trained))],
            [r.get(key) if r.get(key) is not None else float("nan") for r in trained],
            width,
            yerr=[r.get(key + "_std") or 0.0 for r in trained],
            capsize=2,
            label=label,
        )
    ax.set_xticks(range(len(trained)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("box AP (mean ± std over seeds)")
    ax.set_title("AP by object size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ap_by_size.png"), dpi=120)
    plt.close(fig)
