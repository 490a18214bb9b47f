"""Reports of a comparison, made from its records alone: ``table.md`` (one table per detector,
FPN first), ``results.csv`` (one row per run), ``results.json`` (one row per cell, with the
per-seed values and the differences to FPN) and the plots: AP against FLOPs, AP by object size,
learning curves (AP and AP_S against iteration, over seeds)."""

import csv
import dataclasses
import json
import math
import os
from io import StringIO
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog

from ..config import config_from_yaml
from ..io import atomic_write_text
from ..plots import CostPoint, SizeBars, plot_ap_by_size, plot_ap_vs_cost, plot_learning_curves
from ..visualize import render_predictions_grid
from .cells import DETECTORS, NECKS
from .records import RunRecord
from .stats import BASELINE, LATE_FRACTION, CellSummary, MetricSummary

__all__ = ["RUN_COLUMNS", "learning_curve", "render_table", "runs_csv_text", "write_reports"]

# runs_csv_text's columns: the run, then Detectron2's box metrics under the names of the papers.
RUN_COLUMNS = (
    "detector", "neck", "seed", "max_iter", "AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L",
    "train_time_s", "git_commit",
)  # fmt: skip
_BOX_METRICS = (
    ("AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("AP_S", "APs"), ("AP_M", "APm"),
    ("AP_L", "APl"),
)  # fmt: skip


def write_reports(rows: List[CellSummary], out: str) -> None:
    """table.md, results.csv, results.json and the plots of ``rows`` in ``out``."""
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(_json_rows(rows), indent=2))
    atomic_write_text(os.path.join(out, "results.csv"), _csv_text(rows))
    atomic_write_text(os.path.join(out, "table.md"), render_table(rows))
    _plot(rows, out)
    _detections(rows, os.path.join(out, "detections.png"))


def _detections(rows: List[CellSummary], path: str, images: int = 4) -> None:
    """detections.png: the same validation images, one column per row, with the boxes of the
    row's lowest seed (rows whose weights are not in this folder, e.g. collected from another
    machine, are left out)."""
    columns = []
    for row in rows:
        run = row.runs[0] if row.runs else None
        weights = run and os.path.splitext(run.source)[0] + "/model_final.pth"
        if run is None or run.mode != "train" or not os.path.isfile(weights):
            continue
        cfg = config_from_yaml(run.config)
        cfg.MODEL.WEIGHTS = weights
        columns.append((_row_label(row, rows), cfg))
    dataset = columns[0][1].DATASETS.TEST[0] if columns else None
    if dataset in DatasetCatalog.list():
        render_predictions_grid(columns, dataset, images, path)


def _json_rows(rows: List[CellSummary]) -> List[Dict]:
    out = []
    for row in rows:
        data = dataclasses.asdict(row)
        data["runs"] = [f"{run.cell}/seed{run.seed}" for run in row.runs]
        out.append(data)
    return out


def _csv_text(rows: List[CellSummary]) -> str:
    """One line per run: its cell's costs, its seed, metrics, training time and speed."""
    lines = []
    for row in rows:
        costs = dataclasses.asdict(row.costs) if row.costs else {}
        costs.pop("input_size", None)
        base = {"detector": row.detector, "neck": row.label, **costs}
        base.update(neck=row.label)
        for run in row.runs:
            line = {**base, "seed": run.seed, "iterations": run.iterations}
            line.update(
                train_time_s=run.train_time_s, train_images_per_s_run=run.train_images_per_s
            )
            for task, values in run.metrics.items():
                prefix = "" if task == "bbox" else "mask_"
                line.update({prefix + k: v for k, v in values.items()})
            line.update(git_commit=run.git_commit, command=run.command)
            lines.append(line)
        if not row.runs:
            lines.append(base)
    first = ("detector", "neck", "seed")
    columns = list(dict.fromkeys([*first, *(k for line in lines for k in line)]))
    text = StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(lines)
    return text.getvalue()


def runs_csv_text(records: List[RunRecord]) -> str:
    """One line per run (:data:`RUN_COLUMNS`): box metrics of its last evaluation, sorted by
    schedule, detector, neck (registry order) and seed."""
    order = {key: i for i, key in enumerate([*DETECTORS, *NECKS])}

    def key(r: RunRecord):
        return (r.iterations, order.get(r.detector, -1), order.get(r.neck, -1), r.seed)

    text = StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=RUN_COLUMNS)
    writer.writeheader()
    for r in sorted(records, key=key):
        box = r.metrics.get("bbox", {})
        line = {"detector": r.detector, "neck": r.neck, "seed": r.seed, "max_iter": r.iterations}
        line.update({column: _csv_number(box.get(name), 2) for column, name in _BOX_METRICS})
        line.update(train_time_s=_csv_number(r.train_time_s, 0), git_commit=r.git_commit[:12])
        writer.writerow(line)
    return text.getvalue()


def _csv_number(value: Optional[float], digits: int) -> str:
    """``value`` rounded, or empty when missing or NaN."""
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _mean_std(summary: Optional[MetricSummary]) -> str:
    if summary is None or summary.mean is None:
        return "–"
    if summary.std is None:
        return f"{summary.mean:.1f}"
    return f"{summary.mean:.1f} ± {summary.std:.1f}"


def _difference(row: CellSummary, metric: str) -> str:
    diff = row.vs_baseline.get(metric)
    if diff is None or diff.mean is None:
        return "(baseline)" if row.neck == BASELINE else "–"
    text = f"{diff.mean:+.1f}"
    if diff.ci95 is None:
        return text
    low, high = diff.ci95
    return f"{text} [{low:+.1f}, {high:+.1f}]" + ("" if diff.significant else " n.s.")


def _ratio(row: CellSummary, column: str, value: Optional[float], digits: int) -> str:
    if value is None:
        return "–"
    ratio = row.ratios.get(column)
    text = _fmt(float(value), digits)
    return text if ratio is None else f"{text} ({ratio:.2f}x)"


def _cost_cells(row: CellSummary) -> List[str]:
    c = row.costs
    if c is None:
        return ["–"] * 7
    share = c.neck_gflops / c.bottom_up_gflops if c.bottom_up_gflops else None
    return [
        _ratio(row, "neck_params", c.neck_params / 1e6, 2),
        _ratio(row, "gflops", c.gflops, 1),
        "–" if share is None else f"{share * 100:.1f}%",
        _ratio(row, "neck_latency_ms", c.neck_latency_ms, 0 if c.neck_latency_ms > 10 else 2),
        _ratio(row, "latency_ms", c.latency_ms, 0 if c.latency_ms > 10 else 2),
        _ratio(row, "train_peak_mb", c.train_peak_mb, 0),
        _fmt(c.train_images_per_s, 1),
    ]


def _header(sub: List[CellSummary], masks: bool, late: bool) -> List[str]:
    costs = next((r.costs for r in sub if r.costs), None)
    seeds = sorted({s for r in sub for s in r.seeds})
    iterations = sorted({run.iterations for r in sub for run in r.runs})
    where = (
        f"Input {'x'.join(map(str, costs.input_size))}, costs on {costs.device}"
        if costs
        else "Costs not measured"
    )
    memory = costs.memory_kind if costs else "–"
    return [
        f"### {DETECTORS[sub[0].detector]}",
        "",
        f"{where}; {len(seeds)} seed(s) per neck ({', '.join(map(str, seeds)) or 'none'}), "
        f"{'/'.join(map(str, iterations)) or '–'} iterations, each run trained in its own "
        "process; AP = mean ± standard deviation over seeds; Δ = difference to FPN paired by "
        "seed, with its 95% confidence interval (n.s.: the interval contains 0)"
        + (f"; AP gain, last {LATE_FRACTION:.0%} = final AP - AP at that point" if late else "")
        + ". FLOPs by fvcore (1 multiply-add = 1 flop); neck share = neck FLOPs / bottom-up "
        "FLOPs; latency = median of interleaved runs, batch 1 (synchronised on CUDA); (x) = "
        f"ratio to FPN; train peak memory = {memory} over 3 training steps; train img/s = "
        "those steps; run img/s = the runs' training iterations as tools/train_net.py logs them.",
        "",
        "| neck | neck params (M) | GFLOPs | neck share | neck latency (ms) | latency (ms) "
        "| train peak mem (MB) | train img/s | run img/s | AP | ΔAP | AP50 | AP75 | AP_S | ΔAP_S "
        "| AP_M | AP_L |" + (" mask AP |" if masks else "") + (" AP gain, late |" if late else ""),
        "|---" * (17 + masks + late) + "|",
    ]


def render_table(rows: List[CellSummary]) -> str:
    """The comparison as Markdown: one table per detector, in the rows' order."""
    lines = []
    for detector in dict.fromkeys(r.detector for r in rows):
        sub = [r for r in rows if r.detector == detector]
        masks = any(r.metric("segm/AP") for r in sub)
        late = any(r.late_gain for r in sub)
        lines += _header(sub, masks, late)
        for r in sub:
            speeds = [run.train_images_per_s for run in r.runs if run.train_images_per_s]
            cells = [r.label, *_cost_cells(r), _fmt(sum(speeds) / len(speeds)) if speeds else "–"]
            cells += [_mean_std(r.metric("AP")), _difference(r, "AP")]
            cells += [_mean_std(r.metric(m)) for m in ("AP50", "AP75", "APs")]
            cells += [_difference(r, "APs"), _mean_std(r.metric("APm")), _mean_std(r.metric("APl"))]
            cells += [_mean_std(r.metric("segm/AP"))] if masks else []
            cells += [_mean_std(r.late_gain)] if late else []
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plot(rows: List[CellSummary], out: str) -> None:
    """ap_vs_gflops.png, ap_by_size.png and learning_curves.png (AP and AP_S against iteration,
    mean and spread over seeds) of the trained rows."""
    trained = [r for r in rows if r.metric("AP") and r.metric("AP").mean is not None]
    points = [
        CostPoint(r.label, DETECTORS[r.detector], r.costs.gflops, r.metric("AP").mean,
                  r.metric("AP").std or 0.0)
        for r in trained
        if r.costs
    ]  # fmt: skip
    if points:
        plot_ap_vs_cost(points, os.path.join(out, "ap_vs_gflops.png"))
    bars = [
        SizeBars(_row_label(r, rows), {name: _pair(r.metric(key)) for key, name in _SIZES})
        for r in trained
    ]
    if bars:
        plot_ap_by_size(bars, os.path.join(out, "ap_by_size.png"))
    for metric, name in (("AP", "learning_curves.png"), ("APs", "learning_curves_APs.png")):
        curves = {_row_label(r, rows): learning_curve(r, metric) for r in trained}
        curves = {label: by_seed for label, by_seed in curves.items() if by_seed}
        if curves:
            plot_learning_curves(curves, os.path.join(out, name), metric=metric)


_SIZES = (("APs", "AP_S"), ("APm", "AP_M"), ("APl", "AP_L"))


def _pair(summary: Optional[MetricSummary]):
    return (None, None) if summary is None else (summary.mean, summary.std)


def _row_label(row: CellSummary, rows: List[CellSummary]) -> str:
    """The neck's label, with the detector's name when the rows have several detectors."""
    if len({r.detector for r in rows}) == 1:
        return row.label
    return f"{row.label} ({DETECTORS[row.detector]})"


def learning_curve(row: CellSummary, metric: str) -> Dict[int, List]:
    """{seed: [(iteration, value), ...]} of the box ``metric`` at every evaluation of a row."""
    curves = {}
    for run in row.runs:
        points = [
            (e.iteration, e.metrics["bbox"][metric])
            for e in run.evaluations
            if e.metrics.get("bbox", {}).get(metric) is not None
        ]
        if points:
            curves[run.seed] = points
    return curves
