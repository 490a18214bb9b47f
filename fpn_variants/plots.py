"""Plots of a comparison that stay readable for any number of rows: AP against cost with labels
that never overlap, AP by object size with tick labels that never collide, and learning curves
(mean and spread over seeds). Plain functions over plain data; the legend is always outside the
data area."""

import math
import os
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = [
    "CostPoint",
    "SizeBars",
    "place_labels",
    "plot_ap_by_size",
    "plot_ap_vs_cost",
    "plot_learning_curves",
]

# Distances (pixels) between a point and the nearest edge of its label that are tried, nearest
# first, and the directions tried at each (degrees, right of the point first).
_RADII = tuple(range(4, 400, 6))
_ANGLES = (0, 180, 45, 135, 315, 225, 90, 270, 22, 158, 338, 202, 68, 112, 292, 248)
# Half-size (pixels) of the square around a point that a label should not cover.
_MARKER_HALF = 5.0
# Longest tick label line (characters) before it is wrapped.
_WRAP = 14


@dataclass(frozen=True)
class CostPoint:
    """One cell of a comparison on the AP-vs-cost plot: ``label`` (the neck), ``group`` (the
    detector: one color and legend entry each), ``x`` (GFLOPs), ``y`` (AP) and ``yerr`` (its
    standard deviation over seeds, 0 for one seed)."""

    label: str
    group: str
    x: float
    y: float
    yerr: float = 0.0


@dataclass(frozen=True)
class SizeBars:
    """One cell on the AP-by-size plot: ``label`` (x tick) and ``values`` {series: (mean, std)},
    e.g. {"AP_S": (47.4, 0.5), "AP_M": (56.8, 1.6), "AP_L": (68.8, 1.1)}."""

    label: str
    values: Dict[str, Tuple[float, float]]


def _pyplot():
    # Imported here (heavy, and its backend must be chosen before pyplot is imported).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _candidate_boxes(point: np.ndarray, size: np.ndarray):
    """Label boxes around ``point`` (pixels), nearest first: (box, center offset) pairs."""
    w, h = size
    for radius in _RADII:
        for angle in _ANGLES:
            c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            offset = np.array([c * (radius + w / 2), s * (radius + h / 2)])
            center = point + offset
            yield np.concatenate([center - size / 2, center + size / 2]), offset


def _best_box(point, size, placed, markers, frame) -> np.ndarray:
    """The nearest candidate inside ``frame`` that overlaps no placed label and no marker; if
    there is none, the one with the least overlap (labels weigh more than markers)."""
    best, best_cost = None, math.inf
    for box, offset in _candidate_boxes(point, size):
        outside = (box[0] < frame[0]) or (box[1] < frame[1]) or (box[2] > frame[2])
        if outside or box[3] > frame[3]:
            continue
        cost = 10 * sum(_overlap(box, other) for other in placed)
        cost += sum(_overlap(box, m) for m in markers)
        if cost == 0:
            return offset
        if cost < best_cost:
            best, best_cost = offset, cost
    return best if best is not None else np.array([size[0] / 2 + _RADII[0], 0.0])


def place_labels(
    ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], fontsize: float = 8
) -> List:
    """Annotate each point (xs[i], ys[i]) with labels[i] so that no two label boxes overlap and,
    where there is room, no label covers a point; far labels get a leader line.

    Greedy and deterministic: labels are placed one by one (top-most point first), each at the
    nearest free spot in 16 directions around its point, inside the axes. Call it once the axes'
    limits and position are final (after ``tight_layout``): placement is done in pixels.

    Returns:
        list[matplotlib.text.Annotation]: one per label, in the input order.
    """
    if not len(xs) == len(ys) == len(labels):
        raise ValueError(f"{len(xs)} xs, {len(ys)} ys and {len(labels)} labels: give one each")
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    points = ax.transData.transform(np.column_stack([xs, ys]).astype(float).reshape(-1, 2))
    frame = np.array(ax.get_window_extent(renderer).extents)
    markers = [np.concatenate([p - _MARKER_HALF, p + _MARKER_HALF]) for p in points]
    sizes = []
    for label in labels:
        text = ax.text(0, 0, label, fontsize=fontsize)
        extent = text.get_window_extent(renderer)
        sizes.append(np.array([extent.width + 4, extent.height + 2]))
        text.remove()
    offsets, placed = [None] * len(labels), []
    for i in sorted(range(len(labels)), key=lambda i: (-points[i][1], points[i][0])):
        offsets[i] = _best_box(points[i], sizes[i], placed, markers, frame)
        center = points[i] + offsets[i]
        placed.append(np.concatenate([center - sizes[i] / 2, center + sizes[i] / 2]))
    to_points = 72.0 / fig.dpi  # offsets in points scale with the fonts at any savefig dpi
    annotations = []
    for x, y, label, offset, size in zip(xs, ys, labels, offsets, sizes):
        far = np.linalg.norm(offset) > 0.5 * np.linalg.norm(size) + 2 * _MARKER_HALF
        annotations.append(
            ax.annotate(
                label,
                (x, y),
                xytext=tuple(offset * to_points),
                textcoords="offset points",
                ha="center",
                va="center",
                fontsize=fontsize,
                arrowprops=dict(arrowstyle="-", color="0.5", lw=0.6) if far else None,
            )
        )
    return annotations


def _legend_outside(ax, **kwargs) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def _save(fig, path: str, plt) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    plt.close(fig)


def plot_ap_vs_cost(points: Sequence[CostPoint], path: str, title: str = "AP vs cost") -> None:
    """Box AP (mean ± std over seeds) against GFLOPs, one color per group (detector), every
    point labelled without overlap; written as a PNG to ``path``."""
    if not points:
        raise ValueError("no points to plot: give at least one CostPoint")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, max(4.5, 2.5 + 0.25 * len(points))), dpi=110)
    for group in dict.fromkeys(p.group for p in points):
        sub = [p for p in points if p.group == group]
        ax.errorbar(
            [p.x for p in sub],
            [p.y for p in sub],
            yerr=[p.yerr for p in sub],
            fmt="o",
            capsize=3,
            label=group,
        )
    # room around the points for their labels
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel("GFLOPs (fvcore, whole model)")
    ax.set_ylabel("box AP (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend_outside(ax, fontsize=8)
    fig.tight_layout()
    place_labels(ax, [p.x for p in points], [p.y for p in points], [p.label for p in points])
    _save(fig, path, plt)


def _wrapped(label: str) -> str:
    lines = [textwrap.fill(line, _WRAP) for line in label.split("\n")]
    return "\n".join(lines)


def _tick_labels_collide(ax, renderer) -> bool:
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def _fit_tick_labels(ax, fig) -> None:
    """Rotate the x tick labels (0, 30, 60, then 90 degrees) until no two of them collide."""
    for rotation in (0, 30, 60, 90):
        ha = "center" if rotation in (0, 90) else "right"
        for tick in ax.get_xticklabels():
            tick.set_rotation(rotation)
            tick.set_horizontalalignment(ha)
            tick.set_rotation_mode("anchor" if ha == "right" else "default")
        fig.tight_layout()
        if not _tick_labels_collide(ax, fig.canvas.get_renderer()):
            return


def plot_ap_by_size(bars: Sequence[SizeBars], path: str, title: str = "AP by object size") -> None:
    """Grouped bars (mean with a std error bar) of each series (e.g. AP_S, AP_M, AP_L) per
    label; tick labels are wrapped, sized by their number and rotated until none collide."""
    if not bars:
        raise ValueError("no bars to plot: give at least one SizeBars")
    plt = _pyplot()
    series = list(dict.fromkeys(key for b in bars for key in b.values))
    fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 0.8 * len(bars)), 4.5), dpi=110)
    width = 0.8 / len(series)
    x = np.arange(len(bars))
    for i, key in enumerate(series):
        means = [b.values.get(key, (math.nan, 0.0))[0] for b in bars]
        stds = [b.values.get(key, (math.nan, 0.0))[1] or 0.0 for b in bars]
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(x + offset, means, width, yerr=stds, capsize=2, label=key)
    ax.set_xticks(x)
    fontsize = 9 if len(bars) <= 6 else 8 if len(bars) <= 12 else 7
    ax.set_xticklabels([_wrapped(b.label) for b in bars], fontsize=fontsize)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylabel("box AP (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    _legend_outside(ax, fontsize=8)
    _fit_tick_labels(ax, fig)
    _save(fig, path, plt)


def _mean_and_spread(runs: Dict, grid: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Mean, min and max over seeds at each iteration of ``grid``; a seed counts at the
    iterations within its own evaluated range (linear between its evaluations)."""
    stacked = []
    for points in runs.values():
        its, values = np.array(sorted(points), dtype=float).reshape(-1, 2).T
        curve = np.interp(grid, its, values)
        curve[(grid < its[0]) | (grid > its[-1])] = np.nan
        stacked.append(curve)
    stacked = np.array(stacked)
    return np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)


def _with_seeds(label: str, count: int) -> str:
    return f"{label} ({count} seed{'s' if count > 1 else ''})"


def plot_learning_curves(
    curves: Dict[str, Dict[int, List[Tuple[int, float]]]], path: str, metric: str = "AP"
) -> None:
    """``metric`` against iteration, one line per label: the mean over seeds and a band from
    the lowest to the highest seed. ``curves``: {label: {seed: [(iteration, value), ...]}};
    seeds may have been evaluated at different iterations (the mean at an iteration is over
    the seeds whose evaluations span it, interpolated linearly), one seed gives a plain line."""
    curves = {label: runs for label, runs in curves.items() if any(runs.values())}
    if not curves:
        raise ValueError(f"no evaluations to plot: every curve of {metric} is empty")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for label, runs in curves.items():
        runs = {seed: points for seed, points in runs.items() if points}
        grid = np.array(sorted({int(it) for points in runs.values() for it, _ in points}), float)
        mean, low, high = _mean_and_spread(runs, grid)
        (line,) = ax.plot(grid, mean, marker="o", ms=3, label=_with_seeds(label, len(runs)))
        if len(runs) > 1:
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"{metric} (mean over seeds; band: min-max)")
    ax.set_title(f"{metric} during training")
    ax.grid(alpha=0.3)
    _legend_outside(ax, fontsize=8)
    fig.tight_layout()
    _save(fig, path, plt)
