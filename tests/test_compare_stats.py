"""Statistics and table of the comparison on hand-made records: paired differences with their
confidence intervals, the AP gained late in the schedule, "n.s." marks."""

import math

import pytest

from fpn_variants.comparison import CellCosts, RunRecord, late_gain, paired_difference, summarize
from fpn_variants.comparison.records import Evaluation
from fpn_variants.comparison.reports import render_table


def _record(neck, seed, ap, iterations=500, history=()):
    evaluations = [Evaluation(it, {"bbox": {"AP": v}}) for it, v in history]
    evaluations.append(Evaluation(iterations, {"bbox": {"AP": ap, "APs": ap / 2}}))
    return RunRecord(
        "faster_rcnn", neck, seed, f"{neck}.yaml", "h", "", "", "train", iterations, evaluations,
        train_time_s=1.0,
    )  # fmt: skip


def _costs(neck, neck_params):
    return CellCosts(
        "faster_rcnn", neck, "h", "CPU, 2 thread(s)", [256, 256], 2, 1_000_000, neck_params,
        3.0, 2.0, 0.1, 5.0, 4.0, 100.0, 90.0, 400.0, 5.0, "growth of the process's peak RSS",
    )  # fmt: skip


def test_paired_difference_and_its_confidence_interval():
    values = {1: 10.0, 2: 12.0, 3: 14.0, 9: 50.0}
    baseline = {1: 9.0, 2: 10.0, 3: 11.0}
    diff = paired_difference(values, baseline)  # seeds 1-3: differences 1, 2, 3
    t_975_2 = 4.302652729911275  # Student t, 2 degrees of freedom, 97.5% quantile
    half = t_975_2 * 1.0 / math.sqrt(3)
    assert diff.n == 3 and diff.mean == pytest.approx(2.0)
    assert diff.ci95 == pytest.approx([2.0 - half, 2.0 + half])
    assert diff.significant is False  # the interval contains 0
    clear = paired_difference({1: 20.0, 2: 20.5, 3: 21.0}, baseline)
    assert clear.significant is True and clear.ci95[0] > 0
    single = paired_difference({1: 10.0}, baseline)
    assert single.n == 1 and single.ci95 is None and single.significant is None


def test_table_marks_differences_that_are_not_significant():
    runs = [_record("fpn", s, ap) for s, ap in zip((1, 2, 3), (40, 41, 42))]
    runs += [_record("panet", s, ap) for s, ap in zip((1, 2, 3), (40, 43, 41))]
    costs = [_costs("fpn", 200_000), _costs("panet", 300_000)]
    rows = summarize([("faster_rcnn", "fpn"), ("faster_rcnn", "panet")], runs, costs)
    assert rows[1].ratios["neck_params"] == pytest.approx(1.5)
    lines = render_table(rows).splitlines()
    fpn = next(line for line in lines if line.startswith("| FPN |"))
    panet = next(line for line in lines if line.startswith("| PANet |"))
    assert "41.0 ± 1.0 | (baseline)" in fpn
    # differences 0, 2, -1: mean +0.3, interval +-4.303 * 1.53 / sqrt(3)
    assert "41.3 ± 1.5 | +0.3 [-3.5, +4.1] n.s." in panet and "| 5.0% |" in panet
    assert "0.30 (1.50x)" in panet
    assert any("costs on CPU, 2 thread(s)" in line and "peak RSS" in line for line in lines)


def test_ap_gained_over_the_last_fifth_of_the_schedule():
    run = _record("fpn", 1, 30.5, history=[(100, 10.0), (400, 30.0)])
    assert late_gain(run) == pytest.approx(0.5)
    assert late_gain(_record("fpn", 1, 30.5)) is None  # no evaluation at 400


def test_records_round_trip_through_json():
    record = _record("fpn", 1, 30.5, history=[(400, 30.0)])
    again = RunRecord.from_json(record.to_json(), source="x.json")
    assert again == record and again.source == "x.json"
    assert "source" not in record.to_json()
