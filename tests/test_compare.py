"""The side-by-side comparison: every run is tools/train_net.py in a fresh process (same weights
and AP as that command, the same when rerun), several seeds per cell with mean ± std and paired
differences to FPN, and resuming after an interruption without redoing finished runs."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from fpn_variants import compare as compare_module
from fpn_variants.compare import (
    compare,
    late_gain,
    paired_difference,
    render_table,
    summarize,
)
from fpn_variants.data import SyntheticSpec, generate_synthetic_dataset
from fpn_variants.model_zoo.metrics import read_training_metrics

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs", "Synthetic")
TINY_OPTS = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.FPN.OUT_CHANNELS", "16", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4",
    "SOLVER.WARMUP_ITERS", "2", "DATALOADER.NUM_WORKERS", "0", "TEST.PRECISE_BN.NUM_ITER", "2",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # detections after 4 iterations: AP is a number
]  # fmt: skip
NECKS = ["fpn", "panet"]
SEEDS = [3, 4]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A tiny synthetic dataset given by path, as a user's COCO files would be."""
    paths = generate_synthetic_dataset(
        str(tmp_path_factory.mktemp("data")),
        {"train": SyntheticSpec(num_images=8, seed=1), "val": SyntheticSpec(num_images=4, seed=2)},
    )
    return {
        "train": [["tiny_train", *paths["train"]]],
        "test": [["tiny_val", *paths["val"]]],
    }


def _run(out, data, necks=NECKS, seeds=SEEDS, jobs=1):
    return compare(
        ["faster_rcnn"],
        necks,
        str(out),
        config_dir=CONFIG_DIR,
        opts=TINY_OPTS,
        repeats=2,
        seeds=seeds,
        datasets=data,
        threads=1,  # the runs of every test agree bit for bit, however many at once
        jobs=jobs,
    )


@pytest.fixture(scope="module")
def compared(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    return out, _run(out, tiny_data, jobs=2)  # two runs at a time


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_each_run_is_train_net_bit_for_bit(compared, tiny_data, tmp_path):
    out, records = compared
    fpn = records[0]
    assert sorted(fpn["runs"], key=int) == ["3", "4"]
    run = fpn["runs"]["4"]
    assert run["command"].startswith("OMP_NUM_THREADS=1 python tools/train_net.py --config-file")

    # the same run by tools/train_net.py itself, in another folder
    args = compare_module.train_command(
        fpn["config"], str(tmp_path / "train_net"), 4, TINY_OPTS, tiny_data
    )
    tool = os.path.join(os.path.dirname(__file__), "..", "tools", "train_net.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, tool, *args], check=True, capture_output=True, env=env)
    ours = _weights(out / "runs" / "faster_rcnn_fpn" / "seed4" / "model_final.pth")
    theirs = _weights(tmp_path / "train_net" / "model_final.pth")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert read_training_metrics(tmp_path / "train_net" / "metrics.json") == run["metrics"]

    # another seed is another run (initial weights, data order)
    seed3 = _weights(out / "runs" / "faster_rcnn_fpn" / "seed3" / "model_final.pth")
    assert not all(torch.equal(seed3[k], ours[k]) for k in ours)


def test_reports_give_seeds_mean_std_and_differences(compared):
    out, records = compared
    for rec in records:
        costs = rec["costs"]
        assert costs["params"] > costs["neck_params"] > 0
        assert costs["gflops"] > costs["bottom_up_gflops"] > costs["neck_gflops"] > 0
        assert costs["latency_ms"] > costs["neck_latency_ms"] > 0
        assert costs["input_size"] == [128, 128]
        for run in rec["runs"].values():
            assert run["train_time_s"] > 0 and run["iterations"] == 4
            assert set(run["metrics"]["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        events = os.listdir(out / "runs" / f"faster_rcnn_{rec['neck']}" / "seed3")
        assert any(f.startswith("events.out.tfevents") for f in events)  # TensorBoard

    for name in ("table.md", "results.csv", "results.json", "ap_vs_gflops.png", "ap_by_size.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["neck"], r["seed"]) for r in rows] == [
        ("FPN", "3"),
        ("FPN", "4"),
        ("PANet", "3"),
        ("PANet", "4"),
    ]
    cells = json.loads((out / "results.json").read_text())
    panet = cells[1]
    ap = {s: records[1]["runs"][s]["metrics"]["bbox"]["AP"] for s in ("3", "4")}
    assert panet["AP_by_seed"] == ap
    assert panet["AP"] == pytest.approx((ap["3"] + ap["4"]) / 2)
    assert panet["AP_std"] == pytest.approx(abs(ap["3"] - ap["4"]) / math.sqrt(2))
    base = {s: records[0]["runs"][s]["metrics"]["bbox"]["AP"] for s in ("3", "4")}
    assert panet["vs_fpn"]["AP"]["mean"] == pytest.approx(
        (ap["3"] - base["3"] + ap["4"] - base["4"]) / 2
    )
    assert panet["neck_params_vs_fpn"] > 1  # PANet adds the bottom-up path to the FPN
    table = (out / "table.md").read_text()
    assert "2 seed(s) per neck (3, 4)" in table
    assert "| FPN |" in table and "| PANet |" in table and " ± " in table


def test_interrupted_comparison_resumes_and_reruns_identically(
    compared, tiny_data, tmp_path, monkeypatch
):
    trained = []
    real_train = compare_module.train_in_fresh_process

    def train_then_interrupt(args, threads):
        if trained:
            raise KeyboardInterrupt  # Ctrl-C during the second run
        trained.append(args)
        return real_train(args, threads)

    monkeypatch.setattr(compare_module, "train_in_fresh_process", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, tiny_data, necks=["fpn"])
    first = json.loads((tmp_path / "cells" / "faster_rcnn_fpn.json").read_text())
    assert list(first["runs"]) == ["3"]

    measured, retrained = [], []
    monkeypatch.setattr(
        compare_module,
        "train_in_fresh_process",
        lambda a, t: retrained.append(a) or real_train(a, t),
    )
    monkeypatch.setattr(compare_module, "measure_costs", lambda cfg, r: measured.append(cfg))
    records = _run(tmp_path, tiny_data, necks=["fpn"])
    assert measured == []  # the cell's costs were saved before the interruption
    assert [a[a.index("SEED") + 1] for a in retrained] == ["4"]
    assert records[0]["runs"]["3"] == first["runs"]["3"]  # read back, not redone

    # a rerun in another folder, one run at a time, gives the numbers and weights of the first
    # comparison (two at a time)
    original = compared[1][0]["runs"]
    for seed in ("3", "4"):
        assert records[0]["runs"][seed]["metrics"] == original[seed]["metrics"]
    ours = _weights(tmp_path / "runs" / "faster_rcnn_fpn" / "seed4" / "model_final.pth")
    theirs = _weights(compared[0] / "runs" / "faster_rcnn_fpn" / "seed4" / "model_final.pth")
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_folder_of_another_schedule_is_refused_untouched(compared, tiny_data):
    """Runs of other config overrides are not mixed into a comparison (e.g. the model zoo's
    schedule into the demo's folder); the saved cells stay as they were."""
    out = compared[0]
    before = {p: p.read_bytes() for p in (out / "cells").iterdir()}
    longer = [*TINY_OPTS, "SOLVER.MAX_ITER", "6"]
    with pytest.raises(ValueError, match="give this comparison another --out"):
        compare(["faster_rcnn"], NECKS, str(out), config_dir=CONFIG_DIR, opts=longer, seeds=SEEDS,
                datasets=tiny_data, threads=1)  # fmt: skip
    assert {p: p.read_bytes() for p in (out / "cells").iterdir()} == before


def test_paired_difference_and_its_confidence_interval():
    values = {"1": 10.0, "2": 12.0, "3": 14.0, "9": 50.0}
    baseline = {"1": 9.0, "2": 10.0, "3": 11.0}
    diff = paired_difference(values, baseline)  # seeds 1-3: differences 1, 2, 3
    t_975_2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5% quantile
    half = t_975_2 * 1.0 / math.sqrt(3)
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(2.0)
    assert diff["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert diff["significant"] is False  # the interval contains 0
    clear = paired_difference({"1": 20.0, "2": 20.5, "3": 21.0}, baseline)
    assert clear["significant"] is True and clear["ci95"][0] > 0
    single = paired_difference({"1": 10.0}, baseline)
    assert single["n"] == 1 and single["ci95"] is None and single["significant"] is None


def test_table_marks_differences_that_are_not_significant():
    costs = {
        "input_size": [256, 256],
        "threads": 2,
        "params": 1e6,
        "neck_params": 2e5,
        "gflops": 3.0,
        "bottom_up_gflops": 2.0,
        "neck_gflops": 0.1,
        "neck_latency_ms": 5.0,
        "latency_ms": 100.0,
        "train_peak_mb": 400.0,
        "train_images_per_s": 5.0,
    }

    def record(neck, aps):
        runs = {
            str(s): {"metrics": {"bbox": {"AP": ap, "APs": ap / 2}}, "train_time_s": 1.0}
            for s, ap in zip((1, 2, 3), aps)
        }
        return {"detector": "faster_rcnn", "neck": neck, "costs": costs, "runs": runs}

    rows = summarize([record("fpn", [40, 41, 42]), record("panet", [40, 43, 41])])
    lines = render_table(rows).splitlines()
    fpn = next(line for line in lines if line.startswith("| FPN |"))
    panet = next(line for line in lines if line.startswith("| PANet |"))
    assert "41.0 ± 1.0 | (baseline)" in fpn
    # differences 0, 2, -1: mean +0.3, interval +-4.303 * 1.53 / sqrt(3)
    assert "41.3 ± 1.5 | +0.3 [-3.5, +4.1] n.s." in panet and "| 5.0% |" in panet


def test_ap_gained_over_the_last_fifth_of_the_schedule():
    run = {"iterations": 500, "ap_history": [[100, 10.0], [400, 30.0], [500, 30.5]]}
    assert late_gain(run) == pytest.approx(0.5)
    assert late_gain({"iterations": 500, "ap_history": [[500, 30.5]]}) is None  # no eval at 400


def test_unknown_neck_or_detector_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neck 'fpn2' is not one of"):
        compare_module.cell_config("faster_rcnn", "fpn2", CONFIG_DIR, str(tmp_path))
    with pytest.raises(ValueError, match="detector 'yolo' is not one of"):
        compare_module.cell_config("yolo", "fpn", CONFIG_DIR, str(tmp_path))
