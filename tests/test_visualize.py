"""Pictures: scale-assignment levels follow Detectron2's ROIPooler rule; the PNGs are written."""

import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from fpn_variants.comparison import Recipe, cells_from_template
from fpn_variants.config import load_config
from fpn_variants.visualize import (
    GRID_CELL_PX,
    GRID_TITLE_PX,
    box_levels,
    feature_energy,
    plot_feature_maps,
    plot_scale_histogram,
    pooler_levels,
    render_predictions_grid,
)

from .utils import SYNTHETIC_FPN, TINY_TRAINING, builtin_data_in, train_few_iterations

TEMPLATE = os.path.join(
    os.path.dirname(__file__), "..", "configs", "Synthetic", "{detector}_R18_{neck}.yaml"
)
TINY_OPTS = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128"]


@pytest.fixture(scope="module")
def tiny_builtin_data(tmp_path_factory):
    with builtin_data_in(tmp_path_factory.mktemp("datasets"), 4, 2):
        yield


def test_box_levels_follow_the_pooler_rule(tiny_builtin_data):
    result = box_levels("synthetic_multiscale_train", 2, 5, scale=0.5)
    sides = [
        math.sqrt(a["bbox"][2] * a["bbox"][3]) * 0.5
        for record in DatasetCatalog.get("synthetic_multiscale_train")
        for a in record["annotations"]
    ]
    # k = floor(4 + log2(sqrt(wh) / 224)): a 224 px box is on P4, each halving one level lower
    expected = np.floor(4 + np.log2(np.array(sides) / 224 + 1e-8))
    assert np.array_equal(result["unclamped"], expected)
    assert np.array_equal(result["levels"], np.clip(expected, 2, 5))
    assert result["levels"].min() >= 2 and result["levels"].max() <= 5


def test_pictures_are_written(tiny_builtin_data, tmp_path):
    (cell,) = cells_from_template(TEMPLATE, ["faster_rcnn"], ["bifpn"])
    cfg = Recipe.make(TINY_OPTS).config(cell, str(tmp_path))
    maps = {"BiFPN (untrained)": feature_energy(cfg)}
    levels = maps["BiFPN (untrained)"]["levels"]
    assert list(levels) == ["p2", "p3", "p4", "p5", "p6"]
    assert [v.shape for v in levels.values()] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert maps["BiFPN (untrained)"]["image"].shape == (128, 128, 3)
    plot_feature_maps(maps, str(tmp_path / "features.png"))
    result = box_levels("synthetic_multiscale_train", 2, 5)
    plot_scale_histogram(result, str(tmp_path / "scales.png"), "tiny", pooler_levels(cfg))
    for name in ("features.png", "scales.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_predictions_grid_has_one_column_per_model(tmp_path_factory, tmp_path):
    with builtin_data_in(tmp_path_factory.mktemp("grid_data"), 4, 3):
        weights = train_few_iterations(tmp_path / "train")
        cfg = load_config(SYNTHETIC_FPN, [*TINY_TRAINING, "MODEL.WEIGHTS", weights])
        columns = [("FPN, 2 iterations", cfg), ("all boxes", cfg)]
        path = str(tmp_path / "grid.png")
        counts = render_predictions_grid(columns, "synthetic_multiscale_val", 2, path)
        picture = plt.imread(path)
        assert picture.shape[:2] == (GRID_TITLE_PX + 2 * GRID_CELL_PX, 2 * GRID_CELL_PX)
        assert len(counts) == 2 and all(len(column) == 2 for column in counts)
        low = render_predictions_grid(columns[:1], "synthetic_multiscale_val", 9, path, 0.0)
        assert len(low[0]) == 3  # the split has 3 images
        assert all(n >= m for n, m in zip(low[0], counts[0]))  # lower threshold, more boxes
        assert sum(low[0]) > 0
        cfg.defrost()
        cfg.MODEL.WEIGHTS = ""
        with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
            render_predictions_grid([("untrained", cfg)], "synthetic_multiscale_val", 1, path)
