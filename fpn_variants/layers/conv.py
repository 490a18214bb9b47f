"""Convolution blocks shared by every neck: conv, norm and activation in either order.

``ConvNormAct`` keeps the parameter layout of Detectron2's ``Conv2d`` (``weight``, ``bias`` and a
``norm`` child), so Detectron2 FPN checkpoints map onto it key for key.
"""

from typing import Optional, Tuple

import torch
from detectron2.layers import FrozenBatchNorm2d, get_norm
from fvcore.nn import weight_init
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "FOLDABLE_NORMS",
    "NORMS",
    "ConvNormAct",
    "SeparableConvNormAct",
    "build_conv",
    "conv1x1_to_channels_last",
    "fold_batch_norm",
    "get_activation",
    "get_norm_layer",
]

ACTIVATIONS = ("", "relu", "swish")
# The normalization names Detectron2's get_norm understands ("" = none).
NORMS = ("", "BN", "SyncBN", "FrozenBN", "GN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N", "LN")
_BATCH_NORMS = ("BN", "SyncBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N", "FrozenBN")
# Norms that are a per-channel affine map in eval mode, hence foldable into the conv before them.
FOLDABLE_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)


def get_activation(name: str) -> nn.Module:
    """Activation module by name: "" (none), "relu" or "swish" (= SiLU, EfficientDet)."""
    if name == "":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "swish":
        return nn.SiLU()
    raise ValueError(f"activation={name!r} is not one of {list(ACTIVATIONS)}")


def get_norm_layer(
    norm: str, channels: int, eps: Optional[float] = None, momentum: Optional[float] = None
) -> Optional[nn.Module]:
    """Detectron2's ``get_norm`` with a clear error on unknown names and optional BN settings.

    Args:
        norm (str): one of :data:`NORMS`; "" gives None.
        channels (int): number of channels normalized.
        eps (float or None): overrides the batch-norm epsilon (TF references use 1e-3).
        momentum (float or None): overrides the batch-norm momentum (PyTorch convention:
            1 - TF decay, so TF's 0.99 is 0.01).
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {list(NORMS)}")
    if norm == "GN" and channels % 32 != 0:
        raise ValueError(
            f"norm='GN' uses 32 groups, so the channels ({channels}) must be a multiple of 32"
        )
    layer = get_norm(norm, channels)
    if layer is not None and norm in _BATCH_NORMS:
        if eps is not None:
            layer.eps = eps
        if momentum is not None and hasattr(layer, "momentum"):
            layer.momentum = momentum
    return layer


def fold_batch_norm(
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    eps: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv followed by a batch norm in eval mode, as one conv.

    w' = w * g / sqrt(v + eps) per output channel; b' = (b - m) * g / sqrt(v + eps) + beta.
    """
    scale = norm_weight * torch.rsqrt(running_var + eps)
    folded_bias = norm_bias - running_mean * scale
    if bias is not None:
        folded_bias = folded_bias + bias * scale
    return weight * scale.reshape(-1, 1, 1, 1), folded_bias


def conv1x1_to_channels_last(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
) -> torch.Tensor:
    """A 1x1, stride-1 convolution of an NCHW-contiguous tensor as one matrix product whose
    result is laid out NHWC (``torch.channels_last``).

    (N, C, H, W) x (O, C, 1, 1) -> (N, O, H, W) with channels-last strides: the product reads the
    input transposed (HW x C) at no cost, so the layout change that an NHWC neck needs on its
    NCHW inputs takes no pass of its own (and the GEMM beats oneDNN's 1x1 conv on CPU).
    """
    n, c, h, w = x.shape
    rows = x.reshape(n, c, h * w).transpose(1, 2)  # (N, HW, C), a view
    weight_t = weight.reshape(weight.shape[0], c).t()  # (C, O)
    if bias is None:
        out = torch.matmul(rows, weight_t)
    else:
        out = torch.baddbmm(bias, rows, weight_t.expand(n, c, weight_t.shape[1]))
    return out.reshape(n, h, w, weight_t.shape[1]).permute(0, 3, 1, 2)


class ConvNormAct(nn.Conv2d):
    """Conv2d followed by an optional norm and activation, or activation first (``pre_act``).

    Shapes: (N, C_in, H, W) -> (N, C_out, H', W') with H' = ceil(H / stride) for odd kernels
    padded by kernel // 2.
    """

    pre_act: torch.jit.Final[bool]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        bias: bool = True,
        norm: Optional[nn.Module] = None,
        activation: str = "",
        pre_act: bool = False,
    ):
        """
        Args:
            norm (nn.Module or None): normalization applied after the convolution.
            activation (str): one of :data:`ACTIVATIONS`.
            pre_act (bool): apply the activation before the convolution ("act-conv-norm",
                as BiFPN and NAS-FPN do) instead of after the norm ("conv-norm-act").
        """
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=bias
        )
        self.norm = norm if norm is not None else nn.Identity()
        self.activation = get_activation(activation)
        self.pre_act = pre_act
        weight_init.c2_xavier_fill(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_act:
            x = self.activation(x)
        x = self.norm(self._conv_forward(x, self.weight, self.bias))
        if not self.pre_act:
            x = self.activation(x)
        return x


class SeparableConvNormAct(nn.Module):
    """Depthwise kxk conv, pointwise 1x1 conv, then norm; activation before or after.

    Shapes: (N, C_in, H, W) -> (N, C_out, H', W'), as :class:`ConvNormAct`.
    """

    pre_act: torch.jit.Final[bool]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        bias: bool = True,
        norm: Optional[nn.Module] = None,
        activation: str = "",
        pre_act: bool = False,
    ):
        """Same arguments as :class:`ConvNormAct`; ``bias`` applies to the pointwise conv."""
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        self.norm = norm if norm is not None else nn.Identity()
        self.activation = get_activation(activation)
        self.pre_act = pre_act
        weight_init.c2_xavier_fill(self.depthwise)
        weight_init.c2_xavier_fill(self.pointwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_act:
            x = self.activation(x)
        x = self.norm(self.pointwise(self.depthwise(x)))
        if not self.pre_act:
            x = self.activation(x)
        return x


def build_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    separable: bool = False,
    stride: int = 1,
    norm: str = "",
    norm_eps: Optional[float] = None,
    norm_momentum: Optional[float] = None,
    bias: Optional[bool] = None,
    activation: str = "",
    pre_act: bool = False,
) -> nn.Module:
    """A regular or depthwise-separable conv block from string options.

    ``bias=None`` means "bias only without norm" (Detectron2's and mmcv's rule); TF references
    keep the bias in front of BN, which ``bias=True`` reproduces.
    """
    norm_layer = get_norm_layer(norm, out_channels, norm_eps, norm_momentum)
    block = SeparableConvNormAct if separable else ConvNormAct
    return block(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        bias=(norm == "") if bias is None else bias,
        norm=norm_layer,
        activation=activation,
        pre_act=pre_act,
    )
