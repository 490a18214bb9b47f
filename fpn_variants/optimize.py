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

With ``dtype=torch.bfloat16`` the copy's forward also runs under ``torch.autocast`` in bfloat16
(convolutions and matrix products in bfloat16; what :mod:`fpn_variants.precision` keeps in
float32 stays float32): outputs within bfloat16 rounding of the float32 model's, not 1e-6.

The weighted sums of BiFPN are fused (one ``addcmul_`` per input) in the plain model already: that
is exact and also speeds up training.
"""

import copy
import types
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


def optimize_for_inference(
    model: nn.Module, *, channels_last: bool = True, dtype: torch.dtype = torch.float32
) -> nn.Module:
    """A copy of ``model`` that computes the same outputs faster on CPU, for inference only.

    ``model`` (a detector, a backbone or a neck, in eval mode) is left unchanged. In the copy,
    every conv block of the necks with a batch norm has it folded into its conv (the norm's
    parameters and statistics are gone: do not train the copy, or load checkpoints into it), and
    with ``channels_last`` every :class:`~fpn_variants.necks.PyramidNeck` runs its graphs in NHWC.
    Outputs equal the plain model's to float32 rounding (about 1e-6 relative).

    With ``dtype=torch.bfloat16``, calling the copy runs its forward under
    ``torch.autocast(device, torch.bfloat16)`` (weights stay float32; autocast casts them per
    op): outputs (bfloat16 where a conv made them) within bfloat16 rounding of the plain model's.

    Raises:
        ValueError: ``model`` (or a part of it) is in training mode, where batch norms normalize
            by the batch statistics and cannot be folded; or ``dtype`` is neither float32 nor
            bfloat16.
    """
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype={dtype} is not one of [torch.float32, torch.bfloat16]")
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
    if dtype != torch.float32:
        _forward_under_autocast(model, dtype)
    return model


def _forward_under_autocast(model: nn.Module, dtype: torch.dtype) -> None:
    """Make calls of ``model`` (not of its submodules) run under autocast to ``dtype`` on the
    device of its parameters, in place."""
    model.autocast_device_type = next(model.parameters()).device.type
    model.autocast_dtype = dtype
    model.forward = types.MethodType(_autocast_forward, model)


def _autocast_forward(self: nn.Module, *args, **kwargs):
    with torch.autocast(self.autocast_device_type, dtype=self.autocast_dtype):
        return type(self).forward(self, *args, **kwargs)


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
