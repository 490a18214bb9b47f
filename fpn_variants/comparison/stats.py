"""Statistics over seeds: mean and standard deviation of each metric per cell, and each neck's
difference to FPN paired by seed (same seed: same initial bottom-up weights and data order)
with its 95% Student-t confidence interval."""

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

from .cells import NECKS
from .records import CellCosts, RunRecord

__all__ = [
    "BASELINE",
    "COCO_METRICS",
    "DIFFERENCE_METRICS",
    "LATE_FRACTION",
    "RATIO_COLUMNS",
    "CellSummary",
    "MetricSummary",
    "PairedDifference",
    "late_gain",
    "paired_difference",
    "summarize",
]

BASELINE = "fpn"
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Metrics whose difference to FPN the table shows, with its confidence interval.
DIFFERENCE_METRICS = ("AP", "APs")
# Part of the schedule over which the AP gained is reported (plateau criterion).
LATE_FRACTION = 0.2
# Cost columns also given as ratios to the FPN cell of the same detector.
RATIO_COLUMNS = ("neck_params", "gflops", "neck_latency_ms", "latency_ms", "train_peak_mb")


@dataclass
class MetricSummary:
    """One metric over the seeds of a cell: mean, sample standard deviation (None below two
    seeds) and the value of each seed."""

    mean: Optional[float]
    std: Optional[float]
    by_seed: Dict[int, float]

    @staticmethod
    def of(by_seed: Dict[int, float]) -> "MetricSummary":
        values = list(by_seed.values())
        mean = float(np.mean(values)) if values else None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return MetricSummary(mean, std, dict(by_seed))


@dataclass
class PairedDifference:
    """Mean of ``value[seed] - baseline[seed]`` over the seeds both have, its 95% confidence
    interval (None below two seeds) and whether the interval excludes 0."""

    mean: Optional[float]
    n: int
    ci95: Optional[List[float]] = None
    significant: Optional[bool] = None


@dataclass
class CellSummary:
    """One row of the comparison: a cell's costs, its metrics over seeds ("bbox/AP", ...), its
    costs relative to FPN's and its paired differences to FPN."""

    detector: str
    neck: str
    label: str
    costs: Optional[CellCosts]
    runs: List[RunRecord]
    metrics: Dict[str, MetricSummary] = field(default_factory=dict)
    ratios: Dict[str, float] = field(default_factory=dict)
    vs_baseline: Dict[str, PairedDifference] = field(default_factory=dict)
    late_gain: Optional[MetricSummary] = None

    @property
    def seeds(self) -> List[int]:
        return sorted(run.seed for run in self.runs)

    def metric(self, name: str) -> Optional[MetricSummary]:
        """The summary of ``name`` ("AP", "APs", ... for boxes; "segm/AP" for masks)."""
        return self.metrics.get(name if "/" in name else f"bbox/{name}")


def paired_difference(values: Dict[int, float], baseline: Dict[int, float]) -> PairedDifference:
    """The :class:`PairedDifference` of two {seed: value} maps."""
    seeds = sorted(set(values) & set(baseline))
    diffs = np.array([values[s] - baseline[s] for s in seeds], dtype=float)
    result = PairedDifference(float(diffs.mean()) if len(diffs) else None, len(diffs))
    if len(diffs) >= 2:
        half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs))
        low, high = result.mean - half, result.mean + half
        result.ci95, result.significant = [low, high], bool(low > 0 or high < 0)
    return result


def late_gain(run: RunRecord, fraction: float = LATE_FRACTION) -> Optional[float]:
    """Box AP a run gained over the last ``fraction`` of its schedule: its final AP minus the AP
    of its evaluation after (1 - fraction) of the iterations; None without that evaluation."""
    history = {e.iteration: e.metrics.get("bbox", {}).get("AP") for e in run.evaluations}
    mark = round((1 - fraction) * run.iterations)
    if history.get(mark) is None or history.get(run.iterations) is None:
        return None
    return history[run.iterations] - history[mark]


def _by_seed(runs: Sequence[RunRecord], task: str, metric: str) -> Dict[int, float]:
    values = {}
    for run in runs:
        value = run.metrics.get(task, {}).get(metric)
        if value is not None and math.isfinite(value):
            values[run.seed] = value
    return values


def _summarize_cell(detector: str, neck: str, runs: List[RunRecord], costs) -> CellSummary:
    cell = CellSummary(detector, neck, NECKS[neck][0], costs, sorted(runs, key=lambda r: r.seed))
    tasks = sorted({task for run in runs for task in run.metrics})
    for task in tasks:
        for metric in COCO_METRICS:
            cell.metrics[f"{task}/{metric}"] = MetricSummary.of(_by_seed(runs, task, metric))
    gains = {run.seed: late_gain(run) for run in runs}
    if gains and all(g is not None for g in gains.values()):
        cell.late_gain = MetricSummary.of(gains)
    return cell


def summarize(cells, runs: Sequence[RunRecord], costs: Sequence[CellCosts]) -> List[CellSummary]:
    """One :class:`CellSummary` per (detector, neck) of ``cells`` (in their order), from the
    run and cost records; ratios and differences against the FPN cell of the same detector."""
    cost_of = {(c.detector, c.neck): c for c in costs}
    rows = [
        _summarize_cell(
            d, n, [r for r in runs if (r.detector, r.neck) == (d, n)], cost_of.get((d, n))
        )
        for d, n in cells
    ]
    for row in rows:
        base = next((r for r in rows if (r.detector, r.neck) == (row.detector, BASELINE)), None)
        if base is None or base is row:
            continue
        if row.costs and base.costs:
            for column in RATIO_COLUMNS:
                if getattr(base.costs, column):
                    row.ratios[column] = getattr(row.costs, column) / getattr(base.costs, column)
        for metric in DIFFERENCE_METRICS:
            row.vs_baseline[metric] = paired_difference(
                _by_seed(row.runs, "bbox", metric), _by_seed(base.runs, "bbox", metric)
            )
    return rows
