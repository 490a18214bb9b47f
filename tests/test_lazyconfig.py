"""The LazyConfig files (configs/LazyConfig) are twins of the YAML configs: each builds the same
detector as its YAML file (parameter names, shapes and count, buffers, every plain setting of
every module, backbone output shapes), with the same data loaders, optimizer, LR schedule and
training settings. Loading one builds nothing; one of them trains with
tools/lazyconfig_train_net.py."""

import enum
import glob
import importlib.util
import math
import os
import types
from collections import abc

import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data import (
    DatasetCatalog,
    DatasetMapper,
    build_detection_test_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_model
from detectron2.utils.registry import locate
from omegaconf import DictConfig, ListConfig
from torch import nn

import fpn_variants
from fpn_variants.engine import Trainer
from fpn_variants.registry import NECK_REGISTRY

from .utils import builtin_data_in

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
LAZY = os.path.join(CONFIGS, "LazyConfig")
LEAVES = sorted(glob.glob(os.path.join(LAZY, "Synthetic", "*.py"))) + sorted(
    glob.glob(os.path.join(LAZY, "COCO", "*.py"))
)
SYNTHETIC_LEAVES = [p for p in LEAVES if f"{os.sep}Synthetic{os.sep}" in p]


def leaf_id(path: str) -> str:
    return os.path.relpath(path, LAZY)


def yaml_twin(path: str) -> str:
    """configs/LazyConfig/<recipe>/<name>.py -> configs/<recipe>/<name>.yaml"""
    recipe = os.path.basename(os.path.dirname(path))
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(CONFIGS, recipe, name + ".yaml")


def load_yaml(path: str):
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(path, allow_unsafe=False)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


@pytest.fixture(scope="module")
def tiny_builtin_data(tmp_path_factory):
    """The registered built-in names, backed by a small dataset in a temporary folder."""
    with builtin_data_in(tmp_path_factory.mktemp("datasets"), 8, 4):
        yield


# ---------------------------------------------------------------------------------------------
# Comparison of two built objects by their plain settings.
_MODULE_INTERNALS = set(vars(nn.Module())) | {"training"}


def plain(value, depth: int = 0):
    """``value`` as nested lists/dicts of numbers and strings, for comparison: sequences become
    lists (a LazyConfig gives ListConfigs where YAML gives tuples), objects their attributes."""
    if depth > 6:
        return type(value).__name__
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, nn.Module):
        return type(value).__name__  # compared on its own, by name
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = torch.as_tensor(value)
        small = value.numel() <= 64 and not value.is_meta
        return value.tolist() if small else ("tensor", tuple(value.shape))
    if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return value.__qualname__
    if isinstance(value, (abc.Mapping, DictConfig)):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, ListConfig)):
        return [plain(v, depth + 1) for v in value]
    if hasattr(value, "__dict__"):  # a Matcher, a Box2BoxTransform, an augmentation, ...
        fields = {k: plain(v, depth + 1) for k, v in vars(value).items()}
        return {"__type__": type(value).__name__, **fields}
    return repr(value)


def module_settings(model: nn.Module):
    """{module name: {attribute: plain value}} for every submodule's own attributes."""
    return {
        name: {
            "__type__": type(module).__name__,
            **{k: plain(v) for k, v in vars(module).items() if k not in _MODULE_INTERNALS},
        }
        for name, module in model.named_modules()
    }


def assert_same(a, b, path="") -> None:
    """Equal up to float rounding (the YAML anchors sizes are rounded to 4 decimals)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), (path, a, b)
        assert math.isclose(a, b, rel_tol=1e-5) or (math.isnan(a) and math.isnan(b)), (path, a, b)
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), (path, sorted(a.keys() ^ b.keys()))
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


# ---------------------------------------------------------------------------------------------
def test_every_yaml_leaf_has_a_lazy_twin():
    # 3 detectors x the papers' necks per recipe, and the FPN-paper baselines (Synthetic)
    papers = sum(row.paper for row in NECK_REGISTRY)
    assert len(LEAVES) == 2 * 3 * papers + len(NECK_REGISTRY) - papers
    for recipe in ("Synthetic", "COCO"):
        yamls = {
            os.path.splitext(os.path.basename(p))[0]
            for p in glob.glob(os.path.join(CONFIGS, recipe, "*.yaml"))
            if not os.path.basename(p).startswith("Base-")
        }
        lazies = {os.path.splitext(os.path.basename(p))[0] for p in LEAVES if recipe in p}
        assert yamls == lazies, sorted(yamls ^ lazies)


def build_both(path: str, device: str):
    """The LazyConfig model and its YAML twin's, built on ``device`` ("meta": no memory, no
    weight initialization, 5x faster; every shape and setting is still there)."""
    yaml_cfg = load_yaml(yaml_twin(path))
    yaml_cfg.MODEL.DEVICE = device
    with torch.device(device):
        return instantiate(LazyConfig.load(path).model), build_model(yaml_cfg)


@pytest.mark.parametrize("path", LEAVES, ids=leaf_id)
def test_model_is_the_yaml_model(path):
    model, reference = build_both(path, "meta")
    params = {n: (tuple(p.shape), p.requires_grad) for n, p in model.named_parameters()}
    expected = {n: (tuple(p.shape), p.requires_grad) for n, p in reference.named_parameters()}
    assert params == expected
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    buffers = {n: tuple(b.shape) for n, b in model.named_buffers()}
    assert buffers == {n: tuple(b.shape) for n, b in reference.named_buffers()}
    assert model.backbone.output_shape() == reference.backbone.output_shape()
    assert_same(module_settings(model), module_settings(reference))


# Buffer values (anchors, pixel statistics, initial BN statistics) depend on the detector and
# the recipe, not on the neck.
@pytest.mark.parametrize("path", [p for p in LEAVES if "_FPN" in p], ids=leaf_id)
def test_buffers_are_the_yaml_ones(path):
    model, reference = build_both(path, "cpu")
    expected = dict(reference.named_buffers())
    for name, buffer in model.named_buffers():
        assert torch.allclose(buffer.float(), expected[name].float(), rtol=1e-5), name


@pytest.mark.parametrize("path", LEAVES, ids=leaf_id)
def test_optimizer_schedule_and_training_settings_are_the_yaml_ones(path):
    cfg, yaml_cfg = LazyConfig.load(path), load_yaml(yaml_twin(path))
    # Any model with conv, norm and bias parameters shows the parameter groups.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(2, 3, 5, 5))
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    reference = DefaultTrainer.build_optimizer(yaml_cfg, model)
    assert type(optimizer).__name__ == type(reference).__name__  # e.g. SGDWithGradientClip
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    expected = [{k: v for k, v in g.items() if k != "params"} for g in reference.param_groups]
    for group in expected:
        group.pop("foreach")  # an implementation choice of Detectron2's build_optimizer
        group.pop("initial_lr", None)
    for group in groups:
        group.pop("foreach")
    assert groups == expected
    assert [[tuple(p.shape) for p in g["params"]] for g in optimizer.param_groups] == [
        [tuple(p.shape) for p in g["params"]] for g in reference.param_groups
    ]

    max_iter = yaml_cfg.SOLVER.MAX_ITER
    assert cfg.train.max_iter == max_iter
    multiplier = instantiate(cfg.lr_multiplier)
    reference = Trainer.build_lr_scheduler(yaml_cfg, reference)._multiplier
    where = np.linspace(0, 1, 201)[:-1]
    assert np.allclose([multiplier(w) for w in where], [reference(w) for w in where], rtol=1e-6)

    assert cfg.train.eval_period == yaml_cfg.TEST.EVAL_PERIOD
    assert cfg.train.checkpointer.period == yaml_cfg.SOLVER.CHECKPOINT_PERIOD
    precise_bn = cfg.train.get("precise_bn", {})
    assert precise_bn.get("enabled", False) == yaml_cfg.TEST.PRECISE_BN.ENABLED
    if yaml_cfg.TEST.PRECISE_BN.ENABLED:
        assert precise_bn.num_iter == yaml_cfg.TEST.PRECISE_BN.NUM_ITER
    assert cfg.train.init_checkpoint == yaml_cfg.MODEL.WEIGHTS
    assert cfg.train.get("seed", -1) == yaml_cfg.SEED
    assert cfg.train.amp.enabled == yaml_cfg.SOLVER.AMP.ENABLED
    assert cfg.train.amp.precision == yaml_cfg.SOLVER.AMP.PRECISION
    assert cfg.train.amp.eval_enabled == yaml_cfg.TEST.AMP.ENABLED
    assert cfg.train.channels_last == yaml_cfg.MODEL.CHANNELS_LAST
    recipe, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)[:-3]
    assert cfg.train.output_dir == f"output/lazyconfig/{recipe.lower()}/{name}"


@pytest.mark.parametrize("path", LEAVES, ids=leaf_id)
def test_data_loaders_and_evaluator_are_the_yaml_ones(path, tiny_builtin_data):
    cfg, yaml_cfg = LazyConfig.load(path), load_yaml(yaml_twin(path))
    for split, is_train in (("train", True), ("test", False)):
        mapper = instantiate(cfg.dataloader[split].mapper)
        assert_same(plain(mapper), plain(DatasetMapper(yaml_cfg, is_train=is_train)))
    train, test = cfg.dataloader.train, cfg.dataloader.test
    assert train.total_batch_size == yaml_cfg.SOLVER.IMS_PER_BATCH
    assert train.num_workers == test.num_workers == yaml_cfg.DATALOADER.NUM_WORKERS
    assert train.dataset.names in (yaml_cfg.DATASETS.TRAIN[0], list(yaml_cfg.DATASETS.TRAIN))
    assert test.dataset.names in (yaml_cfg.DATASETS.TEST[0], list(yaml_cfg.DATASETS.TEST))
    assert train.dataset.get("filter_empty", True) == yaml_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    assert not test.dataset.filter_empty

    tasks = ["bbox", "segm"] if yaml_cfg.MODEL.MASK_ON else ["bbox"]
    assert list(cfg.dataloader.evaluator.tasks) == tasks
    assert cfg.dataloader.evaluator.dataset_name == test.dataset.names
    assert cfg.dataloader.evaluator.output_dir == os.path.join(cfg.train.output_dir, "inference")
    if path not in SYNTHETIC_LEAVES:
        return  # COCO itself is not here
    train.num_workers = test.num_workers = 0
    dataset = instantiate(train.dataset)
    assert len(dataset) == len(get_detection_dataset_dicts(yaml_cfg.DATASETS.TRAIN))
    batch = next(iter(instantiate(train)))
    assert len(batch) == train.total_batch_size
    assert all("instances" in x for x in batch)
    assert all(x["instances"].has("gt_masks") == yaml_cfg.MODEL.MASK_ON for x in batch)
    first = next(iter(instantiate(test)))
    expected = next(iter(build_detection_test_loader(yaml_cfg, yaml_cfg.DATASETS.TEST[0])))
    assert torch.equal(first[0]["image"], expected[0]["image"])
    evaluator = instantiate(cfg.dataloader.evaluator)
    assert evaluator._tasks == Trainer.build_evaluator(yaml_cfg, test.dataset.names)._tasks


def test_loading_builds_nothing_and_reads_no_data(monkeypatch, tmp_path):
    """``LazyConfig.load`` executes the file's Python (by design): ours only describe objects.
    Loading all of them constructs no module, touches no dataset and writes no file."""

    def forbidden(*args, **kwargs):
        raise AssertionError("called while loading a config")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nn.Module, "__init__", forbidden)
    monkeypatch.setattr(DatasetCatalog, "get", forbidden)
    for path in LEAVES:
        cfg = LazyConfig.load(path)
        assert set(cfg) == {"model", "dataloader", "optimizer", "lr_multiplier", "train"}, path
    assert os.listdir(tmp_path) == []


def _train_net():
    spec = importlib.util.spec_from_file_location(
        "lazyconfig_train_net", os.path.join(REPO, "tools", "lazyconfig_train_net.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Mixed precision (bfloat16 on the CPU) and channels-last, in training and evaluation.
FAST_PATHS = ["train.amp.enabled=True", "train.amp.eval_enabled=True", "train.channels_last=True"]


@pytest.mark.parametrize("options", [[], FAST_PATHS], ids=["fp32", "bf16-channels-last"])
def test_a_lazyconfig_trains_and_evaluates(tiny_builtin_data, tmp_path, options):
    tool = _train_net()
    config = os.path.join(LAZY, "Synthetic", "mask_rcnn_R18_FPN.py")
    tiny = [
        f"train.output_dir={tmp_path}",
        "train.max_iter=3",
        "train.precise_bn.num_iter=2",
        "train.device=cpu",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
        "dataloader.train.mapper.augmentations.0.short_edge_length=[128]",
        "dataloader.train.mapper.augmentations.0.max_size=128",
        "dataloader.test.mapper.augmentations.0.short_edge_length=128",
        "dataloader.test.mapper.augmentations.0.max_size=128",
        # every score, so that the evaluation after 3 iterations has detections
        "model.roi_heads.box_predictor.test_score_thresh=0.0",
        "model.roi_heads.box_predictor.test_topk_per_image=10",
        *options,
    ]
    results = tool.main(tool.base_argument_parser().parse_args(["--config-file", config, *tiny]))
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(results[task])
        assert np.isfinite(results[task]["AP"])
    weights = tmp_path / "model_final.pth"
    assert os.path.isfile(weights)
    assert os.path.isfile(tmp_path / "inference" / "coco_instances_results.json")
    # The config saved in the output folder is YAML that loads back.
    saved = LazyConfig.load(str(tmp_path / "config.yaml"))
    assert saved.train.max_iter == 3
    assert locate(saved.model.backbone._target_) is fpn_variants.FPN

    args = ["--eval-only", "--config-file", config, *tiny, f"train.init_checkpoint={weights}"]
    again = tool.main(tool.base_argument_parser().parse_args(args))
    assert np.isclose(again["bbox"]["AP"], results["bbox"]["AP"])
