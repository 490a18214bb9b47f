"""Faster R-CNN, RetinaNet and Mask R-CNN with every neck, from their configs/Synthetic YAML files
with tiny overrides (128 px, 2 images per batch, 32 channels, fewer BiFPN / NAS-FPN repeats):

(a) a short training run with Detectron2's engine (``fpn_variants.engine.Trainer``) on a tiny
    built-in dataset has finite losses that go down and ends with a COCO evaluation reporting
    every metric (box, and mask for Mask R-CNN); the backbone's ``output_shape()`` matches the
    features it computes on a batch;
(b) a training step and inference on inputs fed directly to the model, at odd image sizes:
    finite losses, a gradient for every trainable parameter, boxes inside the image.
"""

import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

import fpn_variants
from fpn_variants.engine import Trainer, argument_parser, setup
from fpn_variants.registry import NECK_REGISTRY

from .utils import builtin_data_in

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
DETECTORS = ["faster_rcnn", "retinanet", "mask_rcnn"]
NECKS = [row.config_suffix for row in NECK_REGISTRY if row.paper]  # FPN, PANet, BiFPN, NASFPN
COMBOS = [(detector, neck) for detector in DETECTORS for neck in NECKS]
# RetinaNet learns more slowly from scratch (and its steps are cheaper): more iterations.
ITERS = {"faster_rcnn": 16, "mask_rcnn": 16, "retinanet": 24}
# Tiny and fast: 128 px inputs (the 256 px images downscaled), 2 images per batch, 32 channels.
# Every score is kept at test time, so an evaluation after a few iterations has detections.
TINY_OPTS = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "4",
    "DATALOADER.NUM_WORKERS", "0", "MODEL.FPN.OUT_CHANNELS", "32",
    # PreciseBN (tested in test_engine) would run RetinaNet in training mode, moving its loss EMA
    "TEST.PRECISE_BN.ENABLED", "False",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0",
    "TEST.DETECTIONS_PER_IMAGE", "20",
]  # fmt: skip
# Fewer layers than the papers' (3 and 7): the tests check wiring, not capacity. Their configs'
# group norm (32 groups) needs 64 channels: with 32, a 1 x 1 P7 (65 px images) leaves one value
# per group, which GroupNorm refuses in training.
REPEATS = {
    "BiFPN": ["MODEL.BIFPN.NUM_REPEATS", "1", "MODEL.FPN.OUT_CHANNELS", "64"],
    "NASFPN": ["MODEL.NASFPN.NUM_REPEATS", "2", "MODEL.FPN.OUT_CHANNELS", "64"],
}
# Height x width, none a multiple of the largest stride; 1000 x 97 is very elongated.
ODD_SIZES = [(333, 517), (65, 65), (1000, 97)]


def combo_id(combo) -> str:
    return "{}-{}".format(*combo)


def config_file(detector: str, neck: str) -> str:
    return os.path.join(CONFIGS, "Synthetic", f"{detector}_R18_{neck}.yaml")


def tiny_opts(neck: str):
    return TINY_OPTS + REPEATS.get(neck, [])


@pytest.fixture(scope="module")
def tiny_builtin_data(tmp_path_factory):
    """The registered built-in names, backed by a small dataset in a temporary folder."""
    with builtin_data_in(tmp_path_factory.mktemp("datasets"), 16, 4):
        yield


# ---------------------------------------------------------------------------------------------
# (a) Training, output shapes and COCO evaluation with Detectron2's engine.
def train(detector: str, neck: str, output_dir, *opts) -> SimpleNamespace:
    """A short run of one (detector, neck) with the engine, ending with the evaluation."""
    args = argument_parser().parse_args(
        ["--config-file", config_file(detector, neck), *tiny_opts(neck)]
        + ["SOLVER.MAX_ITER", str(ITERS[detector]), "OUTPUT_DIR", str(output_dir), *opts]
    )
    cfg = setup(args)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    history = trainer.storage.history
    losses = [v for v, _ in history("total_loss").values()]
    if detector == "retinanet":
        losses = per_positive_anchor(losses, history("num_pos_anchors").values(), trainer.model)
    return SimpleNamespace(
        cfg=cfg,
        model=trainer.model,
        iters=ITERS[detector],
        losses=losses,
        results=results,
        output_dir=output_dir,
    )


@pytest.fixture(scope="module", params=COMBOS, ids=combo_id)
def trained(request, tiny_builtin_data, tmp_path_factory):
    return train(*request.param, tmp_path_factory.mktemp(combo_id(request.param)))


def per_positive_anchor(losses, num_pos_anchors, model):
    """RetinaNet's losses divided by this batch's positive anchors instead of their running
    average: Detectron2 divides by an EMA (momentum 0.9) that starts at 100, far above the ~40
    positives of a 2-image 128 px batch, so the reported loss grows as the EMA settles."""
    normalizer, out = 100.0, []
    for loss, (per_image, _) in zip(losses, num_pos_anchors):
        positives = max(per_image * 2, 1)  # IMS_PER_BATCH
        normalizer = 0.9 * normalizer + 0.1 * positives
        out.append(loss * normalizer / positives)
    assert np.isclose(normalizer, model.loss_normalizer)  # the same EMA as Detectron2's
    return out


def went_down(losses) -> bool:
    """The mean of the last 3 losses is below 0.85 x the mean of the first 3.

    The loss of a batch depends on its objects, but runs are seeded: the same batches come in
    the same order for every neck. Measured over the 12 pairs: trained, the last 3 are at
    0.56-0.79 of the first 3; with a learning rate of 1e-9, at 0.96-1.02.
    """
    return np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3])


def test_losses_are_finite_and_go_down(trained):
    losses = trained.losses
    assert len(losses) == trained.iters and all(np.isfinite(losses)), losses
    assert went_down(losses), losses


def test_the_loss_criterion_rejects_a_run_that_does_not_learn(tiny_builtin_data, tmp_path):
    run = train("faster_rcnn", "FPN", tmp_path, "SOLVER.BASE_LR", "1e-9", "DATASETS.TEST", "()")
    assert all(np.isfinite(run.losses)) and not went_down(run.losses), run.losses


def test_backbone_output_shape_matches_its_features(trained):
    cfg, model = trained.cfg, trained.model.eval()
    mapper = DatasetMapper(cfg, is_train=False)
    batch = [mapper(d) for d in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:2]]
    images = model.preprocess_image(batch)
    with torch.no_grad():
        features = model.backbone(images.tensor)
    shapes = model.backbone.output_shape()
    assert list(features) == list(shapes)
    height, width = images.tensor.shape[-2:]
    for name, feature in features.items():
        stride = shapes[name].stride
        assert name == f"p{int(math.log2(stride))}"
        assert tuple(feature.shape) == (
            2,
            shapes[name].channels,
            math.ceil(height / stride),
            math.ceil(width / stride),
        ), name
        assert torch.isfinite(feature).all(), name


def test_training_ends_with_a_coco_evaluation(trained):
    tasks = ("bbox", "segm") if trained.cfg.MODEL.MASK_ON else ("bbox",)
    assert set(trained.results) == set(tasks)
    for task in tasks:
        metrics = trained.results[task]
        assert {"AP", "AP50", "AP75", "APs", "APm", "APl"} <= set(metrics), (task, metrics)
        # Finite: the evaluation had detections to match (every score is kept).
        assert all(np.isfinite(metrics[k]) for k in ("AP", "AP50", "AP75")), (task, metrics)
    detections = trained.output_dir / "inference" / "coco_instances_results.json"
    assert detections.stat().st_size > 2  # not "[]"


# ---------------------------------------------------------------------------------------------
# (b) Odd image sizes, inputs given to the model directly.
def model_cfg(detector: str, neck: str):
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.merge_from_file(config_file(detector, neck), allow_unsafe=False)
    cfg.merge_from_list(tiny_opts(neck))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def sample(height: int, width: int, seed: int, with_targets: bool = True):
    """A model input: a random BGR image and two ground-truth objects with box masks."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    inputs = {"image": image, "height": height, "width": width}
    if with_targets:
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        boxes = torch.tensor([[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.95, 0.9]]) * scale
        masks = torch.zeros(2, height, width, dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.round().int().tolist()):
            mask[y0:y1, x0:x1] = True
        targets = Instances((height, width))
        targets.gt_boxes = Boxes(boxes)
        targets.gt_classes = torch.tensor([1, 4])
        targets.gt_masks = BitMasks(masks)
        inputs["instances"] = targets
    return inputs


@pytest.mark.parametrize("detector,neck", COMBOS, ids=[combo_id(c) for c in COMBOS])
def test_trains_and_infers_at_odd_sizes(detector, neck):
    cfg = model_cfg(detector, neck)
    torch.manual_seed(0)
    model = build_model(cfg)
    num_classes = cfg.MODEL.RETINANET.NUM_CLASSES if detector == "retinanet" else 6
    for height, width in ODD_SIZES:
        size = (height, width)
        model.train()
        model.zero_grad()
        # Two images where P7 is 1x1 (65 px): BN needs more than one value per channel.
        images = 2 if min(size) < 128 else 1
        with EventStorage():
            losses = model([sample(height, width, seed=seed) for seed in range(images)])
        assert losses and all(torch.isfinite(v) for v in losses.values()), (size, losses)
        sum(losses.values()).backward()
        for name, param in model.named_parameters():
            if param.requires_grad:
                assert param.grad is not None, (size, f"no gradient for {name}")
                assert torch.isfinite(param.grad).all(), (size, name)

        model.eval()
        with torch.no_grad():
            output = model([sample(height, width, seed=2, with_targets=False)])[0]["instances"]
        assert output.image_size == size
        assert len(output) > 0, size  # every score is kept
        x0, y0, x1, y1 = output.pred_boxes.tensor.unbind(1)
        assert ((0 <= x0) & (x0 <= x1) & (x1 <= width)).all(), size
        assert ((0 <= y0) & (y0 <= y1) & (y1 <= height)).all(), size
        assert ((0 <= output.scores) & (output.scores <= 1)).all(), size
        assert ((0 <= output.pred_classes) & (output.pred_classes < num_classes)).all(), size
        if detector == "mask_rcnn":
            assert tuple(output.pred_masks.shape) == (len(output), height, width)
