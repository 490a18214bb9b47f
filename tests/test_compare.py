"""The side-by-side comparison on a recipe of its own: every run is tools/train_net.py in a fresh
process (its recorded command reproduces it), launchers agree bit for bit, records merge across
folders, records of another recipe are refused, and an interrupted submitit job resumes."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fpn_variants.comparison import (
    Ledger,
    Recipe,
    RecipeMismatchError,
    RunRecord,
    cells_from_configs,
    cells_from_template,
    collect,
    compare,
    config_hash,
    execute,
    make_launcher,
    plan_runs,
)
from fpn_variants.comparison.launchers import LocalLauncher
from fpn_variants.data import SyntheticSpec, generate_synthetic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A recipe of the test's own: tiny images and necks, a short schedule with checkpoints (an
# interrupted run resumes from one) and detections at any score (AP is a number).
RECIPE = """_BASE_: "{base}"
INPUT: {{MIN_SIZE_TRAIN: [128], MAX_SIZE_TRAIN: 128, MIN_SIZE_TEST: 128, MAX_SIZE_TEST: 128}}
MODEL: {{FPN: {{OUT_CHANNELS: 16}}, ROI_HEADS: {{SCORE_THRESH_TEST: 0.0}}}}
SOLVER: {{IMS_PER_BATCH: 2, MAX_ITER: {max_iter}, WARMUP_ITERS: 2, CHECKPOINT_PERIOD: 2}}
DATALOADER: {{NUM_WORKERS: 0}}
TEST: {{PRECISE_BN: {{NUM_ITER: 2}}}}
"""
NECKS = ["fpn", "panet"]
SEEDS = [3, 4]


def write_recipe(folder, max_iter=6):
    """Config files ``<folder>/mine-{neck}-{detector}.yaml`` over the Synthetic leaves."""
    os.makedirs(folder, exist_ok=True)
    for suffix in ("FPN", "PANet"):
        base = os.path.join(REPO, "configs", "Synthetic", f"faster_rcnn_R18_{suffix}.yaml")
        path = os.path.join(folder, f"mine-{suffix}-faster_rcnn.yaml")
        with open(path, "w") as f:
            f.write(RECIPE.format(base=base, max_iter=max_iter))
    return os.path.join(folder, "mine-{neck}-{detector}.yaml")


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """(template, recipe): the test's config files and a tiny dataset given by path."""
    root = tmp_path_factory.mktemp("recipe")
    paths = generate_synthetic_dataset(
        str(root / "data"),
        {"train": SyntheticSpec(num_images=8, seed=1), "val": SyntheticSpec(num_images=4, seed=2)},
    )
    data = {"train": [("tiny_train", *paths["train"])], "test": [("tiny_val", *paths["val"])]}
    return write_recipe(str(root / "configs")), Recipe.make((), data)


@pytest.fixture(scope="module")
def compared(setting, tmp_path_factory):
    """2 necks x 2 seeds with the local launcher, two runs at a time."""
    template, recipe = setting
    out = str(tmp_path_factory.mktemp("local"))
    cells = cells_from_template(template, ["faster_rcnn"], NECKS)
    launcher = make_launcher("local", out, jobs=2)
    rows = compare(cells, out, recipe, SEEDS, launcher, threads=1, repeats=2)
    return out, rows


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _ap(folder, cell, seed):
    return RunRecord.from_json(open(Ledger(folder).run_path(cell, seed)).read()).metrics


def test_a_recipe_of_its_own_gives_the_table(compared):
    out, rows = compared
    assert [(r.label, r.seeds) for r in rows] == [("FPN", SEEDS), ("PANet", SEEDS)]
    table = open(os.path.join(out, "table.md")).read()
    assert "2 seed(s) per neck (3, 4), 6 iterations" in table and "| PANet |" in table
    panet = rows[1]
    ap = {seed: panet.runs[i].metrics["bbox"]["AP"] for i, seed in enumerate(SEEDS)}
    assert panet.metric("AP").by_seed == ap
    assert panet.metric("AP").mean == pytest.approx(sum(ap.values()) / 2)
    assert panet.vs_baseline["AP"].n == 2 and panet.ratios["neck_params"] > 1
    record = panet.runs[0]
    assert record.config_file.endswith("mine-PANet-faster_rcnn.yaml") and record.device
    assert [e.iteration for e in record.evaluations] == [6]
    assert record.command.startswith("OMP_NUM_THREADS=1 python tools/train_net.py --config-file")
    pictures = ("ap_vs_gflops.png", "ap_by_size.png", "learning_curves.png", "detections.png")
    for name in ("results.csv", "results.json", *pictures):
        assert os.path.getsize(os.path.join(out, name)) > 0


def test_printed_command_is_the_recorded_one_and_reproduces_the_run(compared, setting, tmp_path):
    out, _ = compared
    template, recipe = setting
    cells = cells_from_template(template, ["faster_rcnn"], ["fpn"])
    specs = plan_runs(cells, str(tmp_path), recipe, [4], threads=1)
    printed = subprocess.run(
        [sys.executable, "tools/compare.py", "--config-template", template, "--necks", "fpn",
         "--seeds", "4", "--threads", "1", "--out", str(tmp_path), "--print-commands",
         *_dataset_args(recipe)],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert printed == [f"cd {REPO} && {specs[0].command()}"]
    recorded = _ap(out, "faster_rcnn_fpn", 4)
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]  # "python" is ours
    subprocess.run(["bash", "-c", printed[0]], check=True, env=dict(os.environ, PATH=path))
    ours = _weights(os.path.join(specs[0].output_dir, "model_final.pth"))
    theirs = _weights(os.path.join(Ledger(out).run_dir("faster_rcnn_fpn", 4), "model_final.pth"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # a rerun of the comparison records the finished run, with the AP of the first
    compare(cells, str(tmp_path), recipe, [4], make_launcher("local", str(tmp_path)), measure=False)
    assert _ap(str(tmp_path), "faster_rcnn_fpn", 4) == recorded


def _dataset_args(recipe):
    return [
        arg
        for split, entries in recipe.datasets.items()
        for entry in entries
        for arg in (f"--dataset-{split}", *entry)
    ]


def test_submitit_local_gives_the_local_runs_bit_for_bit(compared, setting, tmp_path):
    out, _ = compared
    template, recipe = setting
    cells = cells_from_template(template, ["faster_rcnn"], ["fpn"])
    launcher = make_launcher("submitit-local", str(tmp_path))
    compare(cells, str(tmp_path), recipe, [3], launcher, threads=1, measure=False)
    assert _ap(str(tmp_path), "faster_rcnn_fpn", 3) == _ap(out, "faster_rcnn_fpn", 3)
    ours = _weights(
        os.path.join(Ledger(str(tmp_path)).run_dir("faster_rcnn_fpn", 3), "model_final.pth")
    )
    theirs = _weights(os.path.join(Ledger(out).run_dir("faster_rcnn_fpn", 3), "model_final.pth"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def _copy_records(out, dest, seeds):
    for record in Ledger(out).runs():
        if record.seed in seeds:
            path = Ledger(str(dest)).run_path(record.cell, record.seed)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(record.to_json())


def test_collect_of_two_folders_equals_one_folder_with_both(compared, tmp_path):
    out, _ = compared
    _copy_records(out, tmp_path / "a", [3])
    _copy_records(out, tmp_path / "b", [4])
    _copy_records(out, tmp_path / "both", SEEDS)
    collect([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "merged"))
    collect([str(tmp_path / "both")], str(tmp_path / "one"))
    merged = (tmp_path / "merged" / "table.md").read_text()
    assert merged == (tmp_path / "one" / "table.md").read_text()
    assert "2 seed(s) per neck (3, 4)" in merged and "| PANet |" in merged


def test_a_record_of_another_schedule_is_refused(compared, setting, tmp_path):
    out, _ = compared
    template, recipe = setting
    _copy_records(out, tmp_path / "a", [3])
    # the same cell trained for 8 iterations: another config, another hash
    longer = write_recipe(str(tmp_path / "longer"), max_iter=8)
    (cell,) = cells_from_template(longer, ["faster_rcnn"], ["fpn"])
    cfg = recipe.config(cell, "unused", 4)
    record = RunRecord.from_json(open(Ledger(out).run_path("faster_rcnn_fpn", 4)).read())
    record.config, record.config_hash = cfg.dump(), config_hash(cfg)
    _copy_records_of(record, tmp_path / "b")
    with pytest.raises(RecipeMismatchError, match="SOLVER.MAX_ITER: 6 -> 8"):
        collect([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "merged"))
    # and a comparison of another schedule into a folder of this one, before anything runs
    before = sorted(os.listdir(os.path.join(out, "runs", "faster_rcnn_fpn")))
    with pytest.raises(RecipeMismatchError, match="give this comparison another --out"):
        compare([cell], out, recipe, SEEDS, make_launcher("local", out), measure=False)
    assert sorted(os.listdir(os.path.join(out, "runs", "faster_rcnn_fpn"))) == before


def _copy_records_of(record, dest):
    path = Ledger(str(dest)).run_path(record.cell, record.seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(record.to_json())


def _children(pid):
    """Process ids whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_an_interrupted_submitit_job_resumes_from_its_checkpoint(compared, setting, tmp_path):
    out, _ = compared
    template, recipe = setting
    cells = cells_from_template(template, ["faster_rcnn"], ["fpn"])
    (spec,) = plan_runs(cells, str(tmp_path), recipe, [4], threads=1)
    launcher = make_launcher("submitit-local", str(tmp_path))
    job = launcher.submit(spec)
    last = os.path.join(spec.output_dir, "last_checkpoint")  # written after the checkpoint
    deadline = time.time() + 120
    while not os.path.isfile(last) and time.time() < deadline:
        time.sleep(0.02)
    (task,) = _children(job._process.pid)  # the job's task: the scheduler signals it
    os.kill(task, signal.SIGUSR2)  # what Slurm sends before a time limit or a preemption
    assert job.result() is True
    log = open(os.path.join(spec.output_dir, "log.txt")).read()
    assert "Loading from " + os.path.join(spec.output_dir, "model_0000001.pth") in log
    assert "Starting training from iteration 2" in log and os.path.isfile(spec.record_path)
    assert _ap(str(tmp_path), "faster_rcnn_fpn", 4) == _ap(out, "faster_rcnn_fpn", 4)
    ours = _weights(os.path.join(spec.output_dir, "model_final.pth"))
    theirs = _weights(os.path.join(Ledger(out).run_dir("faster_rcnn_fpn", 4), "model_final.pth"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_eval_only_compares_existing_checkpoints(compared, setting, tmp_path):
    out, _ = compared
    template, recipe = setting
    cells = cells_from_template(template, ["faster_rcnn"], ["fpn"])
    weights = os.path.join(out, "runs", "{detector}_{neck}", "seed{seed}", "model_final.pth")
    evaluated = Recipe.make(recipe.opts, recipe.datasets, eval_only=True)
    launcher = make_launcher("local", str(tmp_path))
    (row,) = compare(cells, str(tmp_path), evaluated, [4], launcher, measure=False, weights=weights)
    assert row.runs[0].mode == "eval"
    assert row.runs[0].metrics == _ap(out, "faster_rcnn_fpn", 4)  # the trained run's final AP
    with pytest.raises(FileNotFoundError, match="seed 5: .*seed5/model_final.pth does not exist"):
        compare(cells, str(tmp_path), evaluated, [5], launcher, measure=False, weights=weights)
    # a recorded evaluation needs its checkpoint no more (a clone with the records alone)
    gone = os.path.join(str(tmp_path), "not_here", "seed{seed}.pth")
    (again,) = compare(cells, str(tmp_path), evaluated, [4], launcher, measure=False, weights=gone)
    assert again.runs[0].metrics == row.runs[0].metrics


def test_a_failed_run_names_its_log_and_shows_its_last_lines(setting, tmp_path):
    template, recipe = setting
    cells = cells_from_template(template, ["faster_rcnn"], ["fpn"])
    (spec,) = plan_runs(cells, str(tmp_path), recipe, [1])
    broken = dataclasses.replace(spec, args=(*spec.args, "MODEL.FPN.NO_SUCH_KEY", "1"))
    with pytest.raises(RuntimeError) as error:
        execute(broken)
    log = os.path.join(spec.output_dir, "console.log")
    assert f"its log: {log}" in str(error.value)
    assert "Non-existent key: MODEL.FPN.NO_SUCH_KEY" in str(error.value)  # a last line
    assert not os.path.exists(spec.record_path)


def test_two_launchers_on_one_ledger_train_each_run_once(setting, tmp_path):
    template, recipe = setting
    command = [
        sys.executable, "tools/compare.py", "--config-template", template, "--necks", "fpn",
        "--seeds", "1", "2", "--threads", "1", "--no-costs", "--out", str(tmp_path),
        *_dataset_args(recipe),
    ]  # fmt: skip
    launchers = [subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)]
    time.sleep(1.0)
    launchers.append(subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE))
    outputs = [p.communicate()[1].decode() for p in launchers]  # "\r" kept: bar updates
    assert [p.returncode for p in launchers] == [0, 0], outputs
    # the console: a progress bar and a line per run, no training logs or upstream notices
    assert all(o.count("\n") <= 10 for o in outputs), outputs
    assert not any("Warning" in o or "W1" in o for o in outputs), outputs
    for seed in (1, 2):
        log = open(os.path.join(Ledger(str(tmp_path)).run_dir("faster_rcnn_fpn", seed), "log.txt"))
        assert log.read().count("Starting training from iteration") == 1  # trained once
        record = RunRecord.from_json(
            open(Ledger(str(tmp_path)).run_path("faster_rcnn_fpn", seed)).read()
        )
        assert record.seed == seed and record.metrics["bbox"]["AP"] is not None
    assert sum("run by another launcher" in o for o in outputs) >= 1


def test_cells_from_config_files_read_detector_and_neck(setting, tmp_path):
    template, _ = setting
    files = [template.format(neck=n, detector="faster_rcnn") for n in ("FPN", "PANet")]
    cells = cells_from_configs(files)
    assert [(c.detector, c.neck) for c in cells] == [
        ("faster_rcnn", "fpn"),
        ("faster_rcnn", "panet"),
    ]
    retina = os.path.join(REPO, "configs", "Synthetic", "retinanet_R18_BiFPN.yaml")
    c5 = os.path.join(REPO, "configs", "Synthetic", "faster_rcnn_R18_C5.yaml")
    cells = cells_from_configs([retina, c5])
    assert [(c.detector, c.neck) for c in cells] == [("retinanet", "bifpn"), ("faster_rcnn", "c5")]
    with pytest.raises(ValueError, match="both build faster_rcnn with fpn"):
        cells_from_configs([files[0], files[0]])


def test_missing_config_unknown_neck_and_unavailable_launcher_are_refused(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no config for faster_rcnn x bifpn"):
        cells_from_template(str(tmp_path / "{detector}_{neck}.yaml"), ["faster_rcnn"], ["bifpn"])
    with pytest.raises(ValueError, match="neck 'fpn2' is not one of"):
        cells_from_template("{detector}_{neck}.yaml", ["faster_rcnn"], ["fpn2"])
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    with pytest.raises(RuntimeError, match="sbatch is not on PATH"):
        make_launcher("slurm", str(tmp_path))
    assert not os.path.exists(tmp_path / "submitit")  # nothing submitted


def test_concurrent_runs_get_disjoint_gpus():
    launcher = LocalLauncher(jobs=2, num_gpus=2, devices=[0, 1, 2, 3])
    assert launcher.device_groups == ["0,1", "2,3"]
    with pytest.raises(RuntimeError, match="needs 6 GPUs, this machine has 4"):
        LocalLauncher(jobs=3, num_gpus=2, devices=[0, 1, 2, 3])
