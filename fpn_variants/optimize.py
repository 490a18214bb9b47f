"""Inference speed-ups as one explicit step: :func:`optimize_for_inference`.

The models the builders return are plain: every neck computes conv -> norm -> activation in NCHW
with the kernels Detectron2's FPN runs (its outputs equal Detectron2's bit for bit for the same
weights), in training and in eval mode, and its checkpoint keys never change. The speed-ups below
compute the same function to float32 rounding, so they are applied to a copy, for inference only:

- batch norms (BN, SyncBN, FrozenBN) folded into the conv before them (one pass instead of two);
- the neck's graphs in NHWC (``torch.channels_last``): oneDNN's convs are 20-60% faster in it on
  CPU; the 1x1 convs that read the NCHW bottom-up features become one matrix product that writes
  NHWC (:func:`~fpn_variants.layers.conv.conv1x1_to_channels_last`), so the layout change costs
  no pass of its own.

The weighted sums of BiFPN are fused (one ``addcmul_`` per input) in the plain model already: that
is exact and also speeds up training.
"""

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers.conv import (
    FOLDABLE_NORMS,
    ConvNormAct,
    SeparableConvNormAct,
    conv1x1_to_channels_last,
    fold_batch_norm,
)
from .necks.base import PyramidNeck

__all__ = ["optimize_for_inference"]


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` that computes the same outputs faster on CPU, for inference only.

    ``model`` (a detector, a backbone or a neck, in eval mode) is left unchanged. In the copy,
    every conv block of the necks with a batch norm has it folded into its conv (the norm's
    parameters and statistics are gone: do not train the copy, or load checkpoints into it), and
    with ``channels_last`` every :class:`~fpn_variants.necks.PyramidNeck` runs its graphs in NHWC.
    Outputs equal the plain model's to float32 rounding (about 1e-6 relative).

    Raises:
        ValueError: ``model`` (or a part of it) is in training mode, where batch norms normalize
            by the batch statistics and cannot be folded.
    """
    training = [name or "the model" for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"optimize_for_inference needs a model in eval mode, but {training[0]} is in "
            "training mode: call model.eval() first (folded batch norms cannot train)"
        )
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (ConvNormAct, SeparableConvNormAct)):
            _fold_norm(module)
    if channels_last:
        for module in model.modules():
            if isinstance(module, PyramidNeck):
                _graphs_to_channels_last(module)
    return model


def _fold_norm(block: nn.Module) -> None:
    """Fold ``block.norm`` (if a batch norm with running statistics) into the conv before it."""
    norm = block.norm
    if not isinstance(norm, FOLDABLE_NORMS) or norm.running_mean is None:
        return
    conv = block if isinstance(block, ConvNormAct) else block.pointwise
    channels = norm.running_mean.shape[0]
    gamma = norm.weight if norm.weight is not None else torch.ones(channels)
    beta = norm.bias if norm.bias is not None else torch.zeros(channels)
    with torch.no_grad():
        weight, bias = fold_batch_norm(
            conv.weight, conv.bias, gamma, beta, norm.running_mean, norm.running_var, norm.eps
        )
    conv.weight = nn.Parameter(weight, requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)
    block.norm = nn.Identity()


def _graphs_to_channels_last(neck: PyramidNeck) -> None:
    """Run the neck's graphs (not its bottom-up network) in NHWC."""
    for graphs in (neck.stem, neck.cells):
        graphs.to(memory_format=torch.channels_last)
        for module in graphs.modules():
            if type(module) is ConvNormAct and module.kernel_size == module.stride == (1, 1):
                # Same parameters, another convolution routine (no state of its own).
                module.__class__ = _Conv1x1ToChannelsLast


class _Conv1x1ToChannelsLast(ConvNormAct):
    """A 1x1 stride-1 :class:`ConvNormAct` whose NCHW inputs give NHWC outputs by one GEMM."""

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        if input.is_contiguous():
            return conv1x1_to_channels_last(input, weight, bias)
        return F.conv2d(input, weight, bias, self.stride, self.padding)
