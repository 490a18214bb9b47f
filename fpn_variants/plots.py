"""Plots of a comparison that stay readable for any number of rows: AP against cost with labels
that never overlap, AP by object size with tick labels that never collide, and learning curves
(mean and spread over seeds). Plain functions over plain data; the legend is always outside the
data area."""

import math
import os
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

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
# Cost of a label position: covered area (pixels^2) of another label, of a point's marker, of a
# box to avoid (weight 1), and its distance (pixels) from its point. A 4-pixel error bar across
# a label costs as much as ~100 pixels of distance; a label over another never wins.
_LABEL_WEIGHT = 1e6
_POINT_WEIGHT = 5.0
_DISTANCE_WEIGHT = 0.5
# Longest tick label line (characters) before it is wrapped.
_WRAP = 14


@dataclass(frozen=True)
class CostPoint:
    """One cell of a comparison on the AP-vs-cost plot: ``label`` (the neck), ``group`` (the
    detector: one color and legend entry each), ``x`` (GFLOPs), ``y`` (AP) and ``yerr`` (its
    standard deviation over seeds; 0 or None for one seed)."""

    label: str
    group: str
    x: float
    y: float
    yerr: Optional[float] = 0.0


@dataclass(frozen=True)
class SizeBars:
    """One cell on the AP-by-size plot: ``label`` (x tick) and ``values`` {series: (mean, std)},
    e.g. {"AP_S": (47.4, 0.5), "AP_M": (56.8, 1.6), "AP_L": (68.8, 1.1)}; a std of None (one
    seed) draws no error bar, a missing series or a mean of None no bar."""

    label: str
    values: Dict[str, Tuple[float, float]]


def _pyplot():
    # Imported here (heavy, and its backend must be chosen before pyplot is imported).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _overlap_areas(boxes: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """(K,) summed intersection areas of each of ``boxes`` (K, 4) with ``others``, as
    (x0, y0, x1, y1)."""
    if not len(others):
        return np.zeros(len(boxes))
    o = np.asarray(others)[None]
    b = boxes[:, None]
    w = np.minimum(b[..., 2], o[..., 2]) - np.maximum(b[..., 0], o[..., 0])
    h = np.minimum(b[..., 3], o[..., 3]) - np.maximum(b[..., 1], o[..., 1])
    return (np.clip(w, 0, None) * np.clip(h, 0, None)).sum(axis=1)


def _candidates(size: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Center offsets (K, 2) of a label box of ``size`` around its point, in the order tried,
    and their distances (K,) from the point to the box's nearest edge."""
    radii = np.repeat(np.array(_RADII, dtype=float), len(_ANGLES))
    angles = np.radians(np.tile(np.array(_ANGLES, dtype=float), len(_RADII)))
    offsets = np.stack(
        [np.cos(angles) * (radii + size[0] / 2), np.sin(angles) * (radii + size[1] / 2)], axis=1
    )
    return offsets, radii


def _best_offset(point, size, placed, points, avoid, frame) -> np.ndarray:
    """The candidate inside ``frame`` of least cost: overlap with a placed label (by far the
    largest), with a point's marker, with an ``avoid`` box, then distance from the point."""
    offsets, radii = _candidates(size)
    centers = point + offsets
    boxes = np.concatenate([centers - size / 2, centers + size / 2], axis=1)
    inside = (boxes[:, :2] >= frame[:2]).all(1) & (boxes[:, 2:] <= frame[2:]).all(1)
    cost = _LABEL_WEIGHT * _overlap_areas(boxes, placed) + radii * _DISTANCE_WEIGHT
    cost += _POINT_WEIGHT * _overlap_areas(boxes, points) + _overlap_areas(boxes, avoid)
    if not inside.any():
        return offsets[0]
    return offsets[np.argmin(np.where(inside, cost, np.inf))]


def _pixel_boxes(
    ax, boxes: Sequence[Tuple[float, float, float, float]], pad: float
) -> List[np.ndarray]:
    """Data-coordinate boxes (x0, y0, x1, y1) as pixel boxes, grown by ``pad`` pixels."""
    out = []
    for x0, y0, x1, y1 in boxes:
        (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
        out.append(np.array([min(a, c) - pad, min(b, d) - pad, max(a, c) + pad, max(b, d) + pad]))
    return out


def place_labels(
    ax,
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    fontsize: float = 8,
    avoid: Sequence[Tuple[float, float, float, float]] = (),
) -> List:
    """Annotate each point (xs[i], ys[i]) with labels[i] so that no two label boxes overlap and,
    where there is room, no label covers a point or a box of ``avoid`` (data coordinates
    (x0, y0, x1, y1), e.g. error bars); far labels get a leader line.

    Greedy and deterministic: labels are placed one by one (top-most point first), each at the
    position of least cost among 16 directions and growing distances around its point, inside
    the axes (weights: ``_LABEL_WEIGHT`` etc.). Call it once the axes' limits and position are
    final (after ``tight_layout``): placement is done in pixels.

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
    avoided = _pixel_boxes(ax, avoid, pad=2.0)
    sizes = []
    for label in labels:
        text = ax.text(0, 0, label, fontsize=fontsize)
        extent = text.get_window_extent(renderer)
        sizes.append(np.array([extent.width + 4, extent.height + 2]))
        text.remove()
    offsets, placed = [None] * len(labels), []
    for i in sorted(range(len(labels)), key=lambda i: (-points[i][1], points[i][0])):
        offsets[i] = _best_offset(points[i], sizes[i], placed, markers, avoided, frame)
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
            yerr=[p.yerr or 0.0 for p in sub],
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
    error_bars = [(p.x, p.y - p.yerr, p.x, p.y + p.yerr) for p in points if p.yerr]
    xs, ys = [p.x for p in points], [p.y for p in points]
    place_labels(ax, xs, ys, [p.label for p in points], avoid=error_bars)
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
        pairs = [b.values.get(key) or (None, None) for b in bars]  # missing: no bar
        means = [math.nan if mean is None else mean for mean, _ in pairs]
        stds = [std or 0.0 for _, std in pairs]
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
