"""Where bfloat16 autocast changes a trained detector's computation, part by part: the relative
error of each neck stage's outputs (eval mode, validation images) and of each part's gradients
(train mode, one training batch, the same sampling seed), against float32. For scale, two
controls: the float32 gradients of the same model in channels-last (the same values, float32 sums
in another order), and those of a second batch (the noise SGD works with).

    python benchmarks/precision_probe.py RUN_DIR [RUN_DIR ...] [--out FILE]

RUN_DIR: a training run's folder (its ``config.yaml`` and ``model_final.pth``), e.g. a run of
``make parity``. Relative error = ||x_bf16 - x_fp32|| / ||x_fp32|| over the part's tensors.
"""

import argparse
import copy
import os
from typing import Callable, Dict, List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage
from torch import Tensor

from fpn_variants.config import load_config
from fpn_variants.console import quiet_upstream_warnings
from fpn_variants.data.builtin import register_synthetic_datasets
from fpn_variants.engine import Trainer
from fpn_variants.io import atomic_write_text
from fpn_variants.layers.graph import FusionGraph
from fpn_variants.model_zoo.packaging import git_commit
from fpn_variants.precision import use_channels_last
from fpn_variants.provenance import command_line, provenance_line

Tensors = Dict[str, List[torch.Tensor]]


def load_run(run_dir: str):
    """The run's config and its trained model (built as ``Trainer`` builds it)."""
    opts = ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"]
    cfg = load_config(os.path.join(run_dir, "config.yaml"), opts)
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(os.path.join(run_dir, "model_final.pth"))
    return cfg, model


def relative_error(ours: List[torch.Tensor], reference: List[torch.Tensor]) -> float:
    diff = sum(((a.float() - b.float()) ** 2).sum() for a, b in zip(ours, reference))
    norm = sum((b.float() ** 2).sum() for b in reference)
    return float((diff / norm).sqrt())


def stage_outputs(model, batch, bf16: bool) -> Tensors:
    """Eval-mode outputs of the bottom-up network and of each neck stage (FusionGraph)."""
    stages = {"bottom_up": model.backbone.bottom_up}
    stages.update(
        (name, m) for name, m in model.backbone.named_modules() if isinstance(m, FusionGraph)
    )
    outputs: Tensors = {}

    def keep(name: str) -> Callable:
        def hook(module, inputs, output):
            values = output.values() if isinstance(output, dict) else output
            outputs[name] = [t.detach().float() for t in values]

        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in stages.items()]
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        model.backbone(model.preprocess_image(batch).tensor)
    for handle in handles:
        handle.remove()
    return outputs


def part_of(name: str) -> str:
    """The part a parameter belongs to: backbone.bottom_up, backbone.cells.3, roi_heads, ..."""
    pieces = name.split(".")
    depth = 3 if pieces[:2] == ["backbone", "cells"] else 2 if pieces[0] == "backbone" else 1
    return ".".join(pieces[:depth])


def part_gradients(model, batch, bf16: bool, seed: int = 0) -> Tuple[Tensors, List[Tensor]]:
    """Train-mode gradients of the summed losses on ``batch``, grouped by :func:`part_of`, and
    the RPN's proposal boxes of each image (what the RoI heads sample from)."""
    model.train()
    model.zero_grad()
    proposals: List[Tensor] = []

    def keep(module, inputs, output):
        proposals.extend(p.proposal_boxes.tensor.detach().float() for p in output[0])

    handle = model.proposal_generator.register_forward_hook(keep)
    torch.manual_seed(seed)  # the RPN's and the RoI heads' sampling
    with EventStorage(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        losses = sum(model(batch).values())
    handle.remove()
    losses.backward()
    grads: Tensors = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            grads.setdefault(part_of(name), []).append(p.grad.detach().clone())
    return grads, proposals


def moved_share(boxes: List[Tensor], reference: List[Tensor], pixels: float = 1.0) -> float:
    """Share of ``boxes`` with no box of ``reference`` (same image) within ``pixels``."""
    moved = total = 0
    for ours, theirs in zip(boxes, reference):
        distance = (ours[:, None, :] - theirs[None, :, :]).abs().amax(dim=2).amin(dim=1)
        moved += int((distance > pixels).sum())
        total += len(ours)
    return moved / max(total, 1)


def probe(run_dir: str) -> List[str]:
    """Markdown lines: the forward errors per stage and the gradient errors per part."""
    cfg, model = load_run(run_dir)
    register_synthetic_datasets()
    seed_all_rng(cfg.SEED)  # the training batches: the same on every call
    val = next(iter(build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])))
    train = iter(build_detection_train_loader(cfg))
    batch_a, batch_b = next(train), next(train)
    fp32, bf16 = stage_outputs(model, val, False), stage_outputs(model, val, True)
    lines = [f"**{run_dir}**", "", "| neck stage (eval) | bf16 vs fp32 |", "|---|---|"]
    lines += [f"| {k} | {relative_error(bf16[k], v):.4f} |" for k, v in fp32.items()]
    grads = {
        "bf16": part_gradients(model, batch_a, True),
        "fp32 channels-last": part_gradients(
            use_channels_last(copy.deepcopy(model)), batch_a, False
        ),
        "fp32, batch B": part_gradients(model, batch_b, False),
    }
    reference, boxes = part_gradients(model, batch_a, False)
    lines += ["", f"| part (train): gradient vs fp32 | {' | '.join(grads)} |"]
    lines += ["|---|" + "---|" * len(grads)]
    for part, values in reference.items():
        errors = [relative_error(g[0].get(part, []), values) for g in grads.values()]
        lines.append(f"| {part} | " + " | ".join(f"{e:.4f}" for e in errors) + " |")
    moved = [moved_share(g[1], boxes) for g in grads.values()]
    lines.append("| RPN proposals moved > 1 px | " + " | ".join(f"{m:.1%}" for m in moved) + " |")
    return lines + [""]


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="training run folders")
    parser.add_argument("--out", help="also write the tables to this file")
    args = parser.parse_args(argv)
    quiet_upstream_warnings()
    torch.set_num_threads(1)
    command = command_line("benchmarks/precision_probe.py", argv)
    header = provenance_line([command], [git_commit()]) + "\n\n"
    text = header + "\n".join(line for run in args.runs for line in probe(run))
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
