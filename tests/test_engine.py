"""Training / evaluation entry point on the built-in data (tiny: 128 px, a few dozen images)."""

import json
import os
import shutil
import time

import numpy as np
import pytest
import torch
from detectron2.config import CfgNode
from detectron2.engine import HookBase

import fpn_variants  # noqa: F401  registers the built-in datasets
from fpn_variants.engine import RUN_LOCK, Trainer, argument_parser, main, setup

from .utils import builtin_data_in

CONFIG = os.path.join(
    os.path.dirname(__file__), "..", "configs", "Synthetic", "faster_rcnn_R18_FPN.yaml"
)
# Tiny and fast: 128 px inputs (the 256 px images are downscaled), 2 images per batch.
TINY_OPTS = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.02", "SOLVER.WARMUP_ITERS", "5",
    "DATALOADER.NUM_WORKERS", "0", "TEST.PRECISE_BN.NUM_ITER", "2",
]  # fmt: skip
ITERS = 30


@pytest.fixture(scope="module")
def tiny_builtin_data(tmp_path_factory):
    """The registered built-in names, backed by a small dataset in a temporary folder."""
    with builtin_data_in(tmp_path_factory.mktemp("datasets"), 24, 8):
        yield


def _cfg(output_dir, *opts, extra_args=()):
    args = argument_parser().parse_args(
        ["--config-file", CONFIG, *extra_args, *TINY_OPTS, "OUTPUT_DIR", str(output_dir), *opts]
    )
    return args, setup(args)


@pytest.fixture(scope="module")
def trained(tiny_builtin_data, tmp_path_factory):
    """A {ITERS}-iteration training run (ends with the evaluation on the val split)."""
    output_dir = tmp_path_factory.mktemp("train")
    _, cfg = _cfg(output_dir, "SOLVER.MAX_ITER", str(ITERS))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    state = {
        "model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
        "optimizer": trainer.optimizer.state_dict(),
    }
    return {"output_dir": output_dir, "results": results, "losses": losses, "state": state}


def test_loss_goes_down(trained):
    losses = trained["losses"]
    assert len(losses) == ITERS and all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.75 * first, (first, last)


def test_training_ends_with_coco_evaluation(trained):
    bbox = trained["results"]["bbox"]
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(bbox)
    assert os.path.isfile(os.path.join(trained["output_dir"], "model_final.pth"))
    config = CfgNode.load_cfg((trained["output_dir"] / "config.yaml").read_text())
    assert config.SOLVER.MAX_ITER == ITERS and config.MODEL.BACKBONE.NAME == "build_fpn_backbone"
    assert os.path.isfile(
        os.path.join(trained["output_dir"], "inference", "coco_instances_results.json")
    )


def test_eval_only(trained, tmp_path):
    weights = os.path.join(trained["output_dir"], "model_final.pth")
    args, _ = _cfg(tmp_path, "MODEL.WEIGHTS", weights, extra_args=["--eval-only"])
    results = main(args)
    assert results["bbox"].keys() == trained["results"]["bbox"].keys()
    assert np.isclose(results["bbox"]["AP50"], trained["results"]["bbox"]["AP50"])


def test_resume_restores_model_optimizer_scheduler_and_iteration(trained):
    _, cfg = _cfg(trained["output_dir"], "SOLVER.MAX_ITER", str(ITERS + 4))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == ITERS
    assert trainer.scheduler.last_epoch == ITERS
    for k, v in trained["state"]["model"].items():
        assert torch.equal(trainer.model.state_dict()[k], v), k
    saved = trained["state"]["optimizer"]["state"]
    loaded = trainer.optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys() and len(saved) > 0
    for k in saved:
        assert torch.equal(saved[k]["momentum_buffer"], loaded[k]["momentum_buffer"])
    trainer.train()
    assert trainer.iter == ITERS + 4  # == MAX_ITER once finished
    assert trainer.training_speed.iterations == ITERS + 4  # the first run's, kept in checkpoints
    assert [i for _, i in trainer.storage.history("total_loss").values()] == list(
        range(ITERS, ITERS + 4)
    )


def test_a_refused_resume_leaves_the_run_folder_as_it_was(trained, tmp_path):
    """--resume with another neck's config into a run folder is refused on its checkpoint; the
    folder's config.yaml still describes its checkpoints (written only once a run can start)."""
    for name in ("config.yaml", "last_checkpoint", "model_final.pth", "metrics.json"):
        shutil.copyfile(trained["output_dir"] / name, tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args, _ = _cfg(tmp_path, "MODEL.BACKBONE.NAME", "build_panet_backbone", extra_args=["--resume"])
    with pytest.raises(ValueError, match="--resume reads the last checkpoint of OUTPUT_DIR"):
        main(args)
    started = ("log.txt", RUN_LOCK)  # what a run writes before it can know it is refused
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name not in started}
    assert after == before


class _SlowHook(HookBase):
    """Stands for the work of hooks after a step (checkpoints, evaluation, PreciseBN)."""

    def after_step(self):
        time.sleep(0.3)


def test_training_speed_times_the_iterations_alone(tiny_builtin_data, tmp_path):
    """The train time and rate that the comparison and the model zoo report leave out start-up
    and hooks, and tools/train_net.py's log carries them."""
    from fpn_variants.model_zoo import read_training_time

    _, cfg = _cfg(tmp_path, "SOLVER.MAX_ITER", "5", "DATASETS.TEST", "()")
    trainer = Trainer(cfg)
    trainer.register_hooks([_SlowHook()])
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    speed = trainer.training_speed.summary()
    assert speed["iterations"] == 5 and 0 < speed["train_time_s"] < wall - 5 * 0.3
    assert speed["images_per_s"] == pytest.approx(2 / speed["seconds_per_iteration"])
    logged = read_training_time(tmp_path / "log.txt")
    assert logged == pytest.approx(speed["train_time_s"], abs=0.06)
    # what the comparison reads back from metrics.json
    with open(tmp_path / "metrics.json", encoding="utf-8") as f:
        final = [json.loads(line) for line in f if "train_time_s" in line]
    assert final[-1]["train_time_s"] == pytest.approx(speed["train_time_s"])
    assert final[-1]["train_images_per_s"] == pytest.approx(speed["images_per_s"])


def test_dataset_by_path_sets_datasets_and_num_classes(tiny_builtin_data, tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.get("synthetic_multiscale_val")  # generates the tiny data
    meta = MetadataCatalog.get("synthetic_multiscale_val")
    _, cfg = _cfg(
        tmp_path,
        extra_args=["--dataset-train", "by_path_train", meta.json_file, meta.image_root],
    )
    assert cfg.DATASETS.TRAIN == ("by_path_train",)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == cfg.MODEL.RETINANET.NUM_CLASSES == 6
    with pytest.raises(FileNotFoundError, match="missing.json"):
        _cfg(tmp_path, extra_args=["--dataset-test", "x", str(tmp_path / "missing.json"), "."])


def test_two_cpu_processes_train_with_gloo(tiny_builtin_data, tmp_path):
    """``--num-gpus 2`` without CUDA: Detectron2's launch + GLOO + our CPU DDP wrapper."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.engine import launch

    DatasetCatalog.get("synthetic_multiscale_val")  # generates the tiny data
    meta = MetadataCatalog.get("synthetic_multiscale_val")
    # by path: spawned processes do not see this process' registrations nor monkeypatches
    data = [meta.json_file, meta.image_root]
    args = argument_parser().parse_args(
        ["--config-file", CONFIG, "--num-gpus", "2"]
        + ["--dataset-train", "ddp_train", *data, "--dataset-test", "ddp_val", *data]
        + TINY_OPTS
        + ["SOLVER.MAX_ITER", "4", "OUTPUT_DIR", str(tmp_path)]
    )
    launch(main, args.num_gpus, dist_url="auto", args=(args,))
    assert os.path.isfile(tmp_path / "model_final.pth")
    assert os.path.isfile(tmp_path / "inference" / "coco_instances_results.json")
