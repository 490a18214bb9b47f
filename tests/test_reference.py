"""tools/reference.py: the reference grid of issue 23, run seed by seed, a rerun training only the
runs whose record is missing, and runs.csv rewritten from the records of every schedule."""

import csv
import os
import re

import pytest

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    PAPER_NECKS,
    Ledger,
    Recipe,
    RecipeMismatchError,
    RunRecord,
    cells_from_template,
    plan_runs,
)
from fpn_variants.comparison.records import Evaluation
from fpn_variants.comparison.reports import RUN_COLUMNS

from .utils import load_tool

RUN_LINE = re.compile(
    r"MAX_ITER (\d+) .*SEED (\d+) OUTPUT_DIR \S+/runs/(faster_rcnn|retinanet)_(\w+)/seed"
)
S = 8  # a short S: the grid's commands and records, no training


@pytest.fixture(scope="module")
def tool():
    return load_tool("reference")


def printed_runs(tool, out, capsys):
    """(neck, seed, iterations, detector) of each printed missing run, in order."""
    tool.main(["--out", str(out), "--schedule", str(S), "--print-commands"])
    runs = []
    for line in capsys.readouterr().out.splitlines():
        match = RUN_LINE.search(line)
        if match:
            runs.append((match[4], int(match[2]), int(match[1]), match[3]))
    return runs


def write_record(out, detector, neck, seed, iterations, metrics, config_hash="h"):
    ledger = Ledger(os.path.join(str(out), f"S{iterations}"))
    record = RunRecord(
        detector, neck, seed, "c.yaml", config_hash, "", "cmd", "train", iterations,
        [Evaluation(iterations, {"bbox": metrics})], train_time_s=1234.4, git_commit="a" * 40,
    )  # fmt: skip
    os.makedirs(os.path.dirname(ledger.run_path(record.cell, seed)), exist_ok=True)
    ledger.write_run(record)


def test_the_grid_runs_seed_by_seed_paper_necks_first(tool, tmp_path, capsys):
    runs = printed_runs(tool, tmp_path, capsys)
    assert len(runs) == 3 * (4 + 4 + len(tool.BASELINES) + 4)
    # every paper neck's seed 1 at S comes first, then seed 2: a partial reference is paired
    assert runs[:4] == [(neck, 1, S, "faster_rcnn") for neck in PAPER_NECKS]
    assert runs[4:8] == [(neck, 2, S, "faster_rcnn") for neck in PAPER_NECKS]
    assert {r for r in runs if r[2] == 2 * S} == {
        (neck, seed, 2 * S, "faster_rcnn") for neck in PAPER_NECKS for seed in (1, 2, 3)
    }
    assert {r[0] for r in runs if r[3] == "retinanet"} == set(PAPER_NECKS)
    assert {r[0] for r in runs if r[3] == "faster_rcnn" and r[0] not in PAPER_NECKS} == set(
        tool.BASELINES
    )


def test_a_recorded_run_is_not_trained_again_and_another_recipe_is_refused(tool, tmp_path, capsys):
    folder = tool.schedule_folder(str(tmp_path), S)
    cells = cells_from_template(DEFAULT_TEMPLATE, ["faster_rcnn"], ["fpn"])
    spec = plan_runs(cells, folder, Recipe.make(tool.schedule_opts(S)), [1])[0]
    assert "MODEL.CHANNELS_LAST True" in spec.command() and "TEST.EVAL_PERIOD 2" in spec.command()
    assert "SOLVER.CHECKPOINT_PERIOD 2" in spec.command()
    write_record(tmp_path, "faster_rcnn", "fpn", 1, S, {"AP": 50.0}, spec.config_hash)
    runs = printed_runs(tool, tmp_path, capsys)
    assert ("fpn", 1, S, "faster_rcnn") not in runs
    assert ("fpn", 2, S, "faster_rcnn") in runs and ("fpn", 1, 2 * S, "faster_rcnn") in runs

    write_record(tmp_path, "faster_rcnn", "fpn", 1, S, {"AP": 50.0}, "another recipe")
    with pytest.raises(RecipeMismatchError, match="faster_rcnn_fpn"):
        printed_runs(tool, tmp_path, capsys)


def test_runs_csv_has_one_sorted_row_per_run_of_every_schedule(tool, tmp_path):
    full = {"AP": 61.234, "AP50": 80.0, "AP75": 70.0, "APs": 40.0, "APm": 60.0, "APl": 70.0}
    write_record(tmp_path, "faster_rcnn", "nasfpn", 1, 2 * S, full)
    write_record(tmp_path, "faster_rcnn", "nasfpn", 1, S, {**full, "APl": float("nan")})
    write_record(tmp_path, "faster_rcnn", "fpn", 2, S, full)
    write_record(tmp_path, "faster_rcnn", "fpn", 1, S, full)
    tool.main(["--out", str(tmp_path), "--report"])
    with open(tmp_path / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == RUN_COLUMNS
    assert [(r["neck"], r["seed"], r["max_iter"]) for r in rows] == [
        ("fpn", "1", str(S)), ("fpn", "2", str(S)), ("nasfpn", "1", str(S)),
        ("nasfpn", "1", str(2 * S)),
    ]  # fmt: skip
    assert rows[0]["AP"] == "61.23" and rows[0]["AP_S"] == "40.00"
    assert rows[0]["train_time_s"] == "1234" and rows[0]["git_commit"] == "a" * 12
    assert rows[2]["AP_L"] == ""  # NaN: no large objects evaluated
