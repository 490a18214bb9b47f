#!/usr/bin/env python
"""How far a trained neck's batch-norm statistics in training are from those it is evaluated with.

In training, a BN layer normalizes with the mean and variance of the current batch; at test time
with its running (or PreciseBN) estimates. Where a batch holds few values per channel (batch 4 on
a 2x2 P7 map: 16), the two differ, and a stack of BN'd cells compounds the difference. For a
training output folder (config.yaml + model_final.pth) and a few training batches, this prints,
for each BN layer of the neck grouped by the size of its map, the batch's deviation from the
running statistics, and for each output level the relative difference between the neck's output
in training mode (batch statistics) and in eval mode (running statistics), given the same
bottom-up features.

    python tools/diagnose_bn.py output/synthetic/retinanet_R18_BiFPN [--batches 8]
"""

import argparse
import copy
import os
from collections import defaultdict

import numpy as np
import torch
from detectron2.modeling import build_model
from torch import nn

from fpn_variants.config import load_config
from fpn_variants.engine import Checkpointer, Trainer


def load(run_dir: str):
    cfg = load_config(os.path.join(run_dir, "config.yaml"), ["DATALOADER.NUM_WORKERS", "0"])
    model = build_model(cfg)
    Checkpointer(model).load(os.path.join(run_dir, "model_final.pth"))
    return cfg, model.eval()


@torch.no_grad()
def diagnose(run_dir: str, batches: int) -> None:
    cfg, model = load(run_dir)
    neck = model.backbone
    stats = defaultdict(lambda: {"mean": [], "var": []})  # "HxW" of the map -> deviations

    def record(module: nn.BatchNorm2d, inputs, _output):
        x = inputs[0]
        n, _, h, w = x.shape
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        std = torch.sqrt(module.running_var + module.eps)
        key = f"{n * h * w} values/channel"
        stats[key]["mean"].append(((mean - module.running_mean).abs() / std).mean().item())
        stats[key]["var"].append(torch.log((var + module.eps) / std**2).abs().mean().item())

    output_diffs = defaultdict(list)
    loader = iter(Trainer.build_train_loader(cfg))
    for _ in range(batches):
        batch = next(loader)
        images = model.preprocess_image(batch).tensor
        features = neck.bottom_up(images)
        eval_out = neck.forward_neck(features)
        train_neck = copy.deepcopy(neck).train()  # the copy's running statistics may change
        hooks = [
            m.register_forward_hook(record)
            for m in train_neck.modules()
            if isinstance(m, nn.BatchNorm2d)
        ]
        train_out = train_neck.forward_neck(features)
        for h in hooks:
            h.remove()
        for name in eval_out:
            diff = (train_out[name] - eval_out[name]).norm() / eval_out[name].norm()
            output_diffs[name].append(diff.item())

    print(f"{run_dir}: {batches} training batches of {cfg.SOLVER.IMS_PER_BATCH} images")
    print("BN layers of the neck, by values per channel in a batch:")
    print(
        "  values/channel | layers x batches | mean |batch - running| / std | mean |log var ratio|"
    )
    for key in sorted(stats, key=lambda k: int(k.split()[0])):
        mean, var = np.mean(stats[key]["mean"]), np.mean(stats[key]["var"])
        print(f"  {key:>22} | {len(stats[key]['mean']):>5} | {mean:.3f} | {var:.3f}")
    print("neck outputs, ||train-mode - eval-mode|| / ||eval-mode||:")
    for name, diffs in output_diffs.items():
        print(f"  {name}: {np.mean(diffs):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a training output folder (config.yaml, model_final.pth)")
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    diagnose(args.run_dir, args.batches)


if __name__ == "__main__":
    main()
