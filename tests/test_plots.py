"""Plots stay readable with many rows: no two labels intersect, the legend covers no data."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from fpn_variants import plots  # noqa: E402
from fpn_variants.plots import CostPoint, SizeBars, place_labels  # noqa: E402

# The 9 rows of the 1-epoch comparison, with two long labels at nearly the same place (as in
# docs/one_epoch_comparison.md, where they were printed on top of each other).
LABELS = [
    "FPN",
    "PANet",
    "BiFPN",
    "NAS-FPN",
    "C4 (single scale)",
    "C5 (single scale)",
    "Bottom-up pyramid",
    "Top-down, no laterals",
    "FPN, P2 only",
]
COSTS = [(3.0, 56.1), (3.1, 53.4), (2.9, 39.6), (4.7, 29.2), (2.1, 47.6)]
COSTS += [(2.6, 30.9), (3.0, 58.8), (3.0, 34.2), (2.99, 34.4)]


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plot functions save, kept open (not closed) for inspection."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, plt: figures.append(fig))
    yield figures
    for fig in figures:
        plt.close(fig)


def _boxes(artists, renderer):
    """Boxes of the texts alone (an annotation's own extent also covers its leader line)."""
    return [Text.get_window_extent(a, renderer) for a in artists if a.get_text()]


def _assert_disjoint(boxes):
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), f"label boxes {a} and {b} intersect"


def _inside(box, frame) -> bool:
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def test_cost_plot_labels_and_legend_do_not_overlap(saved_figures, tmp_path):
    groups = ["Faster R-CNN", "RetinaNet"]
    points = [
        CostPoint(label, groups[i % 2], x, y, 1.0)
        for i, (label, (x, y)) in enumerate(zip(LABELS, COSTS))
    ]
    points.append(CostPoint("FPN, P2 only (copy)", "RetinaNet", 2.99, 34.3, 0.5))
    plots.plot_ap_vs_cost(points, str(tmp_path / "cost.png"))
    (fig,) = saved_figures
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [p.label for p in points]
    labels = _boxes(ax.texts, renderer)
    _assert_disjoint(labels)
    frame = ax.get_window_extent(renderer)
    assert all(_inside(b, frame) for b in labels)
    points_px = ax.transData.transform([(p.x, p.y) for p in points])
    for p in points:  # labels stay off the error bars when there is room
        (x, low), (_, high) = ax.transData.transform([(p.x, p.y - p.yerr), (p.x, p.y + p.yerr)])
        bar = Bbox([[x - 0.5, low], [x + 0.5, high]])
        assert not any(bar.overlaps(b) for b in labels), p
    legend = ax.get_legend().get_window_extent(renderer)
    assert not any(legend.contains(x, y) for x, y in points_px)
    assert not any(legend.overlaps(b) for b in labels)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == groups


def test_place_labels_keeps_labels_off_the_points_when_there_is_room():
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs, ys = np.zeros(12), np.linspace(0, 0.01, 12)  # 12 points almost on one spot
    ax.plot(xs, ys, "o")
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    place_labels(ax, xs, ys, [f"label number {i}" for i in range(12)])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = _boxes(ax.texts, renderer)
    _assert_disjoint(labels)
    for x, y in ax.transData.transform(np.column_stack([xs, ys])):
        assert not any(b.contains(x, y) for b in labels)
    with pytest.raises(ValueError, match="one each"):
        place_labels(ax, [0, 1], [0], ["a", "b"])
    plt.close(fig)


@pytest.mark.parametrize("rows", [9, 16])
def test_size_plot_tick_labels_and_legend_do_not_overlap(saved_figures, tmp_path, rows):
    names = (LABELS * 2)[:rows]
    bars = [
        SizeBars(f"{name}\nFaster R-CNN", {"AP_S": (i, 1.0), "AP_M": (i + 5, 0.5), "AP_L": (80, 0)})
        for i, name in enumerate(names)
    ]
    plots.plot_ap_by_size(bars, str(tmp_path / "size.png"))
    (fig,) = saved_figures
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    ticks = _boxes(ax.get_xticklabels(), renderer)
    assert len(ticks) == rows
    _assert_disjoint(ticks)
    assert all(_inside(b, fig.bbox) for b in ticks), "a tick label is cut off"
    legend = ax.get_legend().get_window_extent(renderer)
    assert len(ax.patches) == 3 * rows
    assert not any(legend.overlaps(p.get_window_extent(renderer)) for p in ax.patches)


def test_learning_curves_mean_and_spread_over_uneven_seeds(saved_figures, tmp_path):
    curves = {
        "FPN": {1: [(100, 20.0), (200, 40.0)], 2: [(100, 30.0), (150, 40.0), (200, 50.0)]},
        "BiFPN": {1: [(100, 10.0), (200, 15.0)]},
    }
    plots.plot_learning_curves(curves, str(tmp_path / "curves.png"), metric="AP_S")
    (fig,) = saved_figures
    ax = fig.axes[0]
    fpn, bifpn = ax.get_lines()
    assert fpn.get_label() == "FPN (2 seeds)" and bifpn.get_label() == "BiFPN (1 seed)"
    # at 150 seed 1 is interpolated (30) and seed 2 evaluated (40)
    assert np.allclose(fpn.get_xdata(), [100, 150, 200])
    assert np.allclose(fpn.get_ydata(), [25, 35, 45])
    assert np.allclose(bifpn.get_ydata(), [10, 15])
    (band,) = ax.collections  # one band: a single seed has none
    spans = band.get_paths()[0].vertices[:, 1]
    assert spans.min() == 20 and spans.max() == 50
    assert "AP_S" in ax.get_ylabel()
    with pytest.raises(ValueError, match="empty"):
        plots.plot_learning_curves({"FPN": {1: []}}, str(tmp_path / "none.png"))


def test_plots_write_png_files(tmp_path):
    plots.plot_ap_vs_cost([CostPoint("FPN", "Faster R-CNN", 3.0, 56.1, 1.0)], tmp_path / "a.png")
    one_seed = {"AP_S": (None, None), "AP_M": (47.4, None)}  # no small object: AP_S undefined
    plots.plot_ap_by_size([SizeBars("FPN", one_seed)], str(tmp_path / "b.png"))
    plots.plot_learning_curves({"FPN": {1: [(10, 1.0)]}}, str(tmp_path / "c.png"))
    for name in ("a.png", "b.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
