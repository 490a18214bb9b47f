"""Costs of a cell, measured without training: parameters, fvcore FLOPs, latency at batch 1 and
the peak memory and speed of training steps, on the config's MODEL.DEVICE.

On CUDA, latency is timed with ``torch.cuda.synchronize`` after each call and the memory is
``torch.cuda.max_memory_allocated`` of the training steps; on the CPU, the memory is the growth
of the process's peak resident size (``ru_maxrss``), measured in a fresh process per cell since a
process's peak only ever grows.
"""

import multiprocessing
import os
import resource
import time
from typing import Dict, List

import torch
from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from ..analysis import (
    count_flops,
    count_neck_flops,
    count_parameters,
    interleaved_latency,
    synchronized,
)
from ..config import config_from_yaml
from ..console import quiet_upstream_warnings
from ..engine import Trainer
from ..optimize import optimize_for_inference
from ..precision import evaluation_autocast, resolve_precision
from .records import CellCosts

__all__ = ["MEMORY_KINDS", "device_label", "measure_costs"]

# What the training memory column measures on each kind of device.
MEMORY_KINDS = {
    "cuda": "CUDA max_memory_allocated",
    "cpu": "growth of the process's peak RSS",
}


def device_label(device: str) -> str:
    """A device as the tables name it: "CPU, 2 threads" or the GPU's name."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU, {torch.get_num_threads()} thread(s)"


def _sample_image(cfg: CfgNode) -> Dict:
    """The first validation image, resized as at test time (a model input dict)."""
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    return next(iter(loader))[0]


def _inference_dtype(cfg: CfgNode) -> torch.dtype:
    """The dtype the config evaluates in: its AMP precision with TEST.AMP.ENABLED, else
    float32 (optimize_for_inference runs float32 or bfloat16)."""
    if not cfg.TEST.AMP.ENABLED:
        return torch.float32
    return resolve_precision(cfg.SOLVER.AMP.PRECISION, cfg.MODEL.DEVICE)


def measure_costs(cfg: CfgNode, config_hash: str, detector: str, neck: str, repeats: int = 10):
    """The :class:`CellCosts` of one cell's config (at its first validation image)."""
    model = build_model(cfg).eval()
    device = next(model.parameters()).device
    sample = _sample_image(cfg)
    with torch.no_grad():
        total_flops = count_flops(model, ([sample],), FlopCountAnalysis)
        images = model.preprocess_image([sample]).tensor
        bottom_up_flops = count_flops(model.backbone.bottom_up, (images,))
        features = model.backbone.bottom_up(images)
        neck_flops = count_neck_flops(model.backbone, features)
        fast = optimize_for_inference(model, dtype=_inference_dtype(cfg))
        stats = interleaved_latency(
            {
                "neck": synchronized(lambda: fast.backbone.forward_neck(features), device),
                "model": synchronized(lambda: fast([sample]), device),
            },
            repeats=repeats,
        )
    steps = _training_step_costs(cfg)
    return CellCosts(
        detector=detector,
        neck=neck,
        config_hash=config_hash,
        device=device_label(cfg.MODEL.DEVICE),
        input_size=[int(sample["image"].shape[-2]), int(sample["image"].shape[-1])],
        threads=torch.get_num_threads(),
        params=count_parameters(model),
        neck_params=count_parameters(model.backbone, exclude_prefix="bottom_up."),
        gflops=total_flops / 1e9,
        bottom_up_gflops=bottom_up_flops / 1e9,
        neck_gflops=neck_flops / 1e9,
        neck_latency_ms=stats["neck"]["median"] * 1e3,
        neck_latency_min_ms=stats["neck"]["min"] * 1e3,
        latency_ms=stats["model"]["median"] * 1e3,
        latency_min_ms=stats["model"]["min"] * 1e3,
        memory_kind=MEMORY_KINDS[device.type],
        **steps,
    )


def _training_step_costs(cfg: CfgNode, steps: int = 3) -> Dict:
    """Peak memory and images/s of training steps on one training batch, in a fresh process.
    The batch is loaded here: the child needs no dataset registration."""
    loader_cfg = cfg.clone()
    loader_cfg.defrost()
    loader_cfg.DATALOADER.NUM_WORKERS = 0  # loading is not timed
    batch = next(iter(Trainer.build_train_loader(loader_cfg)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(
            _train_steps_in_child, (cfg.dump(), batch, steps, torch.get_num_threads())
        )


def _train_steps_in_child(cfg_yaml: str, batch: List[Dict], steps: int, threads: int) -> Dict:
    quiet_upstream_warnings()  # a fresh process: its console is the comparison's
    torch.set_num_threads(threads)
    cfg = config_from_yaml(cfg_yaml)
    seed_all_rng(cfg.SEED)
    model = Trainer.build_model(cfg).train()  # channels-last with MODEL.CHANNELS_LAST
    autocast = evaluation_autocast(
        cfg.SOLVER.AMP.ENABLED, cfg.SOLVER.AMP.PRECISION, cfg.MODEL.DEVICE
    )
    optimizer = Trainer.build_optimizer(cfg, model)
    device = next(model.parameters()).device
    baseline_kb = _resident_kb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = None
    with EventStorage(0):
        for step in range(steps + 1):
            if step == 1:  # the first step allocates optimizer state and warms kernels up
                synchronized(lambda: None, device)()
                start = time.perf_counter()
            with autocast:  # SOLVER.AMP.ENABLED: the training steps' precision
                losses = model(batch)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    synchronized(lambda: None, device)()
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb, 0) / 1024
    return {"train_peak_mb": peak_mb, "train_images_per_s": steps * len(batch) / elapsed}


def _resident_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
