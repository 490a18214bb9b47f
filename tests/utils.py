"""Tiny configs (R18 bottom-up, narrow necks, small images) on the CPU."""

import contextlib
import importlib.util
import os
from typing import Dict, Iterator

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.modeling import Backbone
from torch import nn

import fpn_variants
from fpn_variants.data import SyntheticSpec, synthetic
from fpn_variants.engine import Trainer, argument_parser, setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# EfficientDet-D0's BiFPN width and levels (P3-P7 over C3-C5), given to BiFPN(...).
EFFDET_D0 = dict(out_channels=64, num_extra_levels=2)
# The necks that make their extra levels by max-pooling only.
POOLING_NECKS = ("build_bifpn_backbone", "build_nasfpn_backbone")


def make_cfg(neck: str = "build_fpn_backbone", levels: str = "p2p6", channels: int = 32):
    """A config for a ResNet-18 + ``neck`` backbone; ``levels`` is "p2p6" (for Faster R-CNN) or
    "p3p7" (for RetinaNet). The detector keys read the levels the neck produces."""
    cfg = fpn_variants.add_fpn_variants_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = neck
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    set_levels(cfg, levels)
    cfg.MODEL.FPN.OUT_CHANNELS = channels
    return cfg


def set_levels(cfg, levels: str) -> None:
    """Bottom-up features, extra levels and detector features of configs/Base-*.yaml: "p2p6"
    (Faster R-CNN: res2-res5, P6 by max-pool) or "p3p7" (RetinaNet: res3-res5, P6/P7 by convs,
    or by max-pooling for the necks that pool theirs, as the BiFPN and NAS-FPN configs)."""
    pooled = cfg.MODEL.BACKBONE.NAME in POOLING_NECKS
    if levels == "p2p6":
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.NUM_EXTRA_LEVELS, cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = 1, "maxpool"
        cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    else:
        cfg.MODEL.META_ARCHITECTURE = "RetinaNet"
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
        cfg.MODEL.FPN.NUM_EXTRA_LEVELS = 2
        cfg.MODEL.FPN.EXTRA_LEVEL_TYPE = "maxpool" if pooled else "conv"
    cfg.MODEL.FPN.IN_FEATURES = list(cfg.MODEL.RESNETS.OUT_FEATURES)


class StridedBackbone(Backbone):
    """A scriptable stand-in bottom-up network: features "c<l>" with the given channels at
    strides 2**l, made by average pooling and a 1x1 conv (e.g. EfficientNet-B0's C3-C5)."""

    def __init__(self, channels: Dict[int, int]):
        super().__init__()
        self.levels = sorted(channels)
        self.convs = nn.ModuleList(nn.Conv2d(3, channels[lvl], 1) for lvl in self.levels)
        self._out_features = [f"c{lvl}" for lvl in self.levels]
        self._out_feature_channels = {f"c{lvl}": channels[lvl] for lvl in self.levels}
        self._out_feature_strides = {f"c{lvl}": 2**lvl for lvl in self.levels}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for lvl, conv in zip(self.levels, self.convs):
            k = 2**lvl
            out[f"c{lvl}"] = conv(F.avg_pool2d(x, k, k, ceil_mode=True))
        return out


def neck_parameters(model: nn.Module) -> int:
    """Number of parameters outside the bottom-up network."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("bottom_up."))


@contextlib.contextmanager
def builtin_data_in(folder, train_images: int, val_images: int) -> Iterator[None]:
    """The registered built-in names (synthetic_multiscale_train/val), backed by a small dataset
    of ``train_images`` / ``val_images`` images generated in ``folder`` on first use."""
    splits = {
        "train": SyntheticSpec(num_images=train_images, seed=1),
        "val": SyntheticSpec(num_images=val_images, seed=2),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FPN_VARIANTS_DATASETS", str(folder))
        mp.setattr(synthetic, "DEFAULT_SPLITS", splits)
        yield


# A Faster R-CNN R18-FPN of configs/Synthetic at 128 px, small enough to train in seconds.
SYNTHETIC_FPN = os.path.join(ROOT, "configs", "Synthetic", "faster_rcnn_R18_FPN.yaml")
TINY_TRAINING = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1", "DATALOADER.NUM_WORKERS", "0",
    "TEST.PRECISE_BN.ENABLED", "False", "DATASETS.TEST", "()",
]  # fmt: skip


def train_few_iterations(output_dir, iterations: int = 2) -> str:
    """Train :data:`SYNTHETIC_FPN` for ``iterations`` on the registered built-in data (no
    evaluation); returns its final weights file."""
    opts = [*TINY_TRAINING, "SOLVER.MAX_ITER", str(iterations), "OUTPUT_DIR", str(output_dir)]
    cfg = setup(argument_parser().parse_args(["--config-file", SYNTHETIC_FPN, *opts]))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return os.path.join(str(output_dir), "model_final.pth")


def load_tool(name: str, folder: str = "tools"):
    """The module of ``<folder>/<name>.py`` (tools and benchmarks are scripts, not a package),
    executed."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
