"""The side-by-side comparison: reports from a tiny 2-cell run, and resuming after an interruption
without redoing finished cells."""

import csv
import json
import os

import pytest

from fpn_variants import compare as compare_module
from fpn_variants.compare import compare

from .utils import builtin_data_in

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs", "Synthetic")
TINY_OPTS = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.FPN.OUT_CHANNELS", "16", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4",
    "SOLVER.WARMUP_ITERS", "2", "DATALOADER.NUM_WORKERS", "0", "TEST.PRECISE_BN.NUM_ITER", "2",
]  # fmt: skip
NECKS = ["fpn", "panet"]


@pytest.fixture(scope="module")
def tiny_builtin_data(tmp_path_factory):
    with builtin_data_in(tmp_path_factory.mktemp("datasets"), 8, 4):
        yield


def _run(out, **kwargs):
    return compare(
        ["faster_rcnn"], NECKS, str(out), config_dir=CONFIG_DIR, opts=TINY_OPTS, repeats=2, **kwargs
    )


def test_interrupted_comparison_resumes_without_redoing_finished_cells(
    tiny_builtin_data, tmp_path, monkeypatch
):
    trained = []
    real_train = compare_module.train_and_evaluate

    def train_then_interrupt(cfg):
        if trained:
            raise KeyboardInterrupt  # Ctrl-C during the second cell
        trained.append(cfg.OUTPUT_DIR)
        return real_train(cfg)

    monkeypatch.setattr(compare_module, "train_and_evaluate", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    assert sorted(os.listdir(tmp_path / "cells")) == ["faster_rcnn_fpn.json"]
    first = json.loads((tmp_path / "cells" / "faster_rcnn_fpn.json").read_text())

    measured = []
    real_measure = compare_module.measure_costs
    monkeypatch.setattr(compare_module, "train_and_evaluate", real_train)
    monkeypatch.setattr(
        compare_module,
        "measure_costs",
        lambda cfg, repeats: measured.append(cfg.OUTPUT_DIR) or real_measure(cfg, repeats),
    )
    records = _run(tmp_path)
    assert [os.path.basename(p) for p in measured] == ["faster_rcnn_panet"]
    assert records[0] == first  # the finished cell is read back, not redone

    for rec in records:
        costs = rec["costs"]
        assert costs["params"] > costs["neck_params"] > 0
        assert costs["gflops"] > costs["neck_gflops"] > 0
        assert costs["latency_ms"] > costs["neck_latency_ms"] > 0
        assert costs["train_images_per_s"] > 0 and costs["input_size"] == [128, 128]
        assert rec["train_time_s"] > 0 and rec["iterations"] == 4
        assert set(rec["metrics"]["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert os.path.isdir(tmp_path / "runs" / f"faster_rcnn_{rec['neck']}")
        events = os.listdir(tmp_path / "runs" / f"faster_rcnn_{rec['neck']}")
        assert any(f.startswith("events.out.tfevents") for f in events)  # TensorBoard

    for name in ("table.md", "results.csv", "results.json", "ap_vs_gflops.png", "ap_by_size.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    table = (tmp_path / "table.md").read_text()
    assert "| FPN |" in table and "| PANet |" in table
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["neck"] for r in rows] == ["FPN", "PANet"]
    panet, fpn = rows[1], rows[0]
    ratio = float(panet["neck_params_vs_fpn"])
    assert ratio == pytest.approx(float(panet["neck_params"]) / float(fpn["neck_params"]))
    assert ratio > 1  # PANet adds the bottom-up path to the FPN


def test_unknown_neck_or_detector_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neck 'fpn2' is not one of"):
        compare_module.cell_config("faster_rcnn", "fpn2", CONFIG_DIR, str(tmp_path))
    with pytest.raises(ValueError, match="detector 'yolo' is not one of"):
        compare_module.cell_config("yolo", "fpn", CONFIG_DIR, str(tmp_path))
