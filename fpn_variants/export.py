"""Export helpers: TorchScript scripting of the necks together with their bottom-up network."""

import copy

import torch
from torch import nn

__all__ = ["script_backbone", "scriptable_copy"]


def scriptable_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that ``torch.jit.script`` accepts.

    Detectron2's ResNet keeps its stages in a plain Python list, which TorchScript (torch >= 2.x)
    no longer converts; the copy holds them in an ``nn.ModuleList`` instead. Parameters are copied,
    so the copy computes exactly what ``model`` computes.
    """
    model = copy.deepcopy(model)
    for module in model.modules():
        stages = module.__dict__.get("stages")
        if isinstance(stages, list) and all(isinstance(s, nn.Module) for s in stages):
            del module.__dict__["stages"]
            module.stages = nn.ModuleList(stages)
    return model


def script_backbone(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of a :func:`scriptable_copy` of ``model``."""
    return torch.jit.script(scriptable_copy(model))
