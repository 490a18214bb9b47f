"""tools/build_zoo.py: the releases are runs of the reference's recipe (the reference's own
seed-1 runs where it has them), and a recorded run whose weights are elsewhere is refused before
anything trains."""

import os

import pytest

from fpn_variants.comparison import (
    DEFAULT_TEMPLATE,
    Ledger,
    RunRecord,
    cells_from_template,
    plan_runs,
)
from fpn_variants.comparison.records import Evaluation

from .utils import load_tool

S = 8  # a short schedule: plans and records only, no training


@pytest.fixture(scope="module")
def zoo():
    return load_tool("build_zoo")


@pytest.fixture(scope="module")
def reference():
    return load_tool("reference")


def test_the_zoo_runs_are_the_reference_runs_of_seed_1(zoo, reference, tmp_path):
    args = zoo.parse_args(["--out", str(tmp_path), "--schedule", str(S), "--jobs", "2"])
    assert args.recipe == "reference" and args.threads == 1
    cells = cells_from_template(DEFAULT_TEMPLATE, ["retinanet", "mask_rcnn"], ["bifpn"])
    folder, recipe, seeds = zoo.zoo_runs(args, cells)
    assert folder == reference.schedule_folder(str(tmp_path), S) and seeds == [1]
    ours = plan_runs(cells, folder, recipe, seeds)
    # the reference's own plan of the same cell: same ledger entry, same resolved config
    theirs = plan_runs(cells[:1], folder, reference.Recipe.make(reference.schedule_opts(S)), [1])
    assert (ours[0].record_path, ours[0].config_hash) == (
        theirs[0].record_path,
        theirs[0].config_hash,
    )
    assert "SOLVER.MAX_ITER 8" in ours[1].command() and "mask_rcnn_bifpn" in ours[1].record_path


def test_the_configs_recipe_keeps_their_schedule_and_seed(zoo, tmp_path):
    args = zoo.parse_args(["--recipe", "configs", "--out", str(tmp_path)])
    cells = cells_from_template(DEFAULT_TEMPLATE, ["faster_rcnn"], ["fpn"])
    folder, recipe, seeds = zoo.zoo_runs(args, cells)
    cfg = recipe.config(cells[0], folder)
    assert folder == str(tmp_path) and recipe.opts == () and seeds == [cfg.SEED]


def test_a_recorded_run_without_its_weights_is_refused_before_anything_runs(
    zoo, tmp_path, monkeypatch
):
    cells = cells_from_template(DEFAULT_TEMPLATE, ["retinanet"], ["fpn"])
    ledger = Ledger(os.path.join(str(tmp_path), f"S{S}"))
    record = RunRecord(
        "retinanet", "fpn", 1, "c.yaml", "h", "", "cmd", "train", S,
        [Evaluation(S, {"bbox": {"AP": 50.0}})],
    )  # fmt: skip
    os.makedirs(os.path.dirname(ledger.run_path(cells[0].name, 1)))
    ledger.write_run(record)

    def must_not_run(*args, **kwargs):
        raise AssertionError("nothing may run")

    monkeypatch.setattr(zoo, "compare", must_not_run)
    argv = ["--out", str(tmp_path), "--schedule", str(S), "--detectors", "retinanet"]
    with pytest.raises(SystemExit, match="retinanet_fpn seed 1 is recorded .* not on this machine"):
        zoo.main([*argv, "--necks", "fpn", "--manifest", str(tmp_path / "manifest.json")])
    assert not os.path.exists(tmp_path / "manifest.json")

    os.makedirs(ledger.run_dir(cells[0].name, 1))
    open(os.path.join(ledger.run_dir(cells[0].name, 1), "model_final.pth"), "w").close()
    zoo.check_weights_here(cells, ledger.out, 1)  # weights here: accepted


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--threads", "0"], ["--recipe", "x"]])
def test_bad_arguments_are_refused(zoo, argv, capsys):
    with pytest.raises(SystemExit):
        zoo.parse_args(argv)
    assert "error" in capsys.readouterr().err
