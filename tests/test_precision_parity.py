"""tools/precision_parity.py: seeds paired across two tools/compare.py folders, and the verdict
rule of issue 20 (mean within +-1 AP, 95% interval inside +-2.5, 3 to 8 seeds)."""

import importlib.util
import os

import pytest

from fpn_variants.comparison import Ledger, RunRecord
from fpn_variants.comparison.records import Evaluation

TOOL = os.path.join(os.path.dirname(__file__), "..", "tools", "precision_parity.py")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("precision_parity", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_results(folder, aps, neck="fpn"):
    """Run records of tools/compare.py: one per seed with AP and APs (= AP / 2)."""
    ledger = Ledger(str(folder))
    for seed, ap in enumerate(aps, start=1):
        metrics = {"bbox": {"AP": ap, "APs": ap / 2}}
        record = RunRecord(
            "faster_rcnn", neck, seed, "c.yaml", "h", "", "", "train", 250,
            [Evaluation(250, metrics)],
        )  # fmt: skip
        os.makedirs(os.path.dirname(ledger.run_path(record.cell, seed)), exist_ok=True)
        ledger.write_run(record)
    return str(folder)


@pytest.mark.parametrize(
    "baseline,fast,expected",
    [
        ([50, 52, 48], [50.2, 51.9, 48.4], "parity"),  # differences +0.2, -0.1, +0.4
        ([50, 52, 48], [48.0, 50.1, 45.8], "no parity"),  # about -2 on every seed
        ([50, 52, 48], [53, 49, 51], "add seeds"),  # +3, -3, +3: interval far wider than 2.5
        ([50, 52], [50.1, 52.1], "add seeds"),  # 2 seeds: not decided
        ([50, 52, 48, 50, 52, 48, 50, 52], [53, 49, 51, 47, 53, 49, 51, 47], "no parity"),
    ],
)
def test_verdict(tool, tmp_path, baseline, fast, expected):
    rows = tool.main([write_results(tmp_path / "a", baseline), write_results(tmp_path / "b", fast)])
    assert [r["verdict"] for r in rows] == [expected]
    assert rows[0]["AP"].n == len(baseline)
    mean = sum(f - b for f, b in zip(fast, baseline)) / len(fast)
    assert rows[0]["AP"].mean == pytest.approx(mean)
    assert rows[0]["APs"].mean == pytest.approx(mean / 2)


def test_only_cells_and_seeds_in_both_folders_are_paired(tool, tmp_path):
    write_results(tmp_path / "a", [50, 52, 48, 47])
    write_results(tmp_path / "b", [51, 53, 49])
    rows = tool.main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert rows[0]["AP"].n == 3 and rows[0]["AP"].mean == pytest.approx(1.0)
    write_results(tmp_path / "c", [50, 52, 48], neck="bifpn")
    with pytest.raises(SystemExit, match="no .* cell is in both"):
        tool.main([str(tmp_path / "a"), str(tmp_path / "c")])
    with pytest.raises(FileNotFoundError, match="no run records: run tools/compare.py --out"):
        tool.main([str(tmp_path / "a"), str(tmp_path / "missing")])
