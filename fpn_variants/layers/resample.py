"""Resampling of a feature map from one pyramid level to another.

Every edge of a neck's node graph is a :class:`Resample`: an optional convolution (a 1x1
projection when channels differ, or a learned stride-2 3x3 conv) and an optional spatial op
(upsampling or TF-"SAME" max-pooling). The spatial op always returns the exact size of the target
level, so necks work for inputs whose size is not a multiple of the largest stride.
"""

from typing import List, Optional

import torch
import torch.nn.functional as F
from fvcore.nn import weight_init
from torch import nn

from .conv import build_conv

__all__ = [
    "UPSAMPLE_MODES",
    "FitSize",
    "MaxPoolSame",
    "PoolingEdges",
    "Resample",
    "Upsample",
    "fit_to_size",
]

UPSAMPLE_MODES = ("nearest", "bilinear", "deconv")


def fit_to_size(x: torch.Tensor, size: List[int]) -> torch.Tensor:
    """Crop (N, C, H, W) to ``size``; resize (nearest) instead if it is smaller.

    Every spatial op here returns at least the target size (k-times upsampling of a map rounded
    up by a stride-k downsampling, SAME pooling, stride-2 3x3 convs with padding 1), so this is a
    crop. When traced, the crop has no branch on the sizes, so the trace holds at every input
    size; otherwise a map of the right size is returned as is (a crop to the full size would
    cost a zero-filled copy in the backward). The resize covers bottom-up networks that round
    down.
    """
    if not torch.jit.is_tracing():
        if x.shape[-2] == size[0] and x.shape[-1] == size[1]:
            return x
        if x.shape[-2] < size[0] or x.shape[-1] < size[1]:
            return F.interpolate(x, size=(size[0], size[1]), mode="nearest")
    return x[:, :, : size[0], : size[1]]


class FitSize(nn.Module):
    """Spatial op of an edge whose conv already resamples (a strided conv): only fits the size."""

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        return fit_to_size(x, size)


class Upsample(nn.Module):
    """Upsampling by ``factor`` to the target size: nearest, bilinear or a learned deconv.

    Shapes: (N, C, h, w) -> (N, C, H, W) with (H, W) = ``size``, about ``factor`` times (h, w).
    """

    mode: torch.jit.Final[str]
    factor: torch.jit.Final[int]

    def __init__(self, factor: int, mode: str = "nearest", channels: int = 0):
        """
        Args:
            factor (int): 2**(level difference).
            mode (str): one of :data:`UPSAMPLE_MODES`; "deconv" needs ``channels``.
        """
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample={mode!r} is not one of {list(UPSAMPLE_MODES)}")
        self.mode = mode
        self.factor = factor
        if mode == "deconv":
            self.deconv = nn.ConvTranspose2d(channels, channels, factor, stride=factor)
            weight_init.c2_xavier_fill(self.deconv)
        else:
            self.deconv = nn.Identity()

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        if self.mode == "bilinear":
            return F.interpolate(x, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=float(self.factor), mode="nearest")
        else:
            x = self.deconv(x)
        return fit_to_size(x, size)


class MaxPoolSame(nn.Module):
    """Max-pooling with TensorFlow "SAME" padding: output size ceil(H / stride).

    The padding is split as TF does (the extra pixel after) and made of -inf, so padded positions
    never win. It is computed with shape arithmetic only (no branch, no ``ceil_mode``), so traces
    and ONNX exports hold at every input size. Kernel 1 is a strided subsampling.
    Shapes: (N, C, H, W) -> (N, C, ceil(H / s), ceil(W / s)), then fitted to the target size.
    """

    kernel_size: torch.jit.Final[int]
    stride: torch.jit.Final[int]

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def _total_padding(self, length: int) -> int:
        # (ceil(L / s) - 1) * s + k - L = k - 1 - (L - 1) % s, clamped at 0 without a branch.
        total = self.kernel_size - 1 - (length - 1) % self.stride
        return (total + abs(total)) // 2

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        if self.kernel_size == 1:
            return fit_to_size(x[:, :, :: self.stride, :: self.stride], size)
        pad_h, pad_w = self._total_padding(x.shape[-2]), self._total_padding(x.shape[-1])
        if torch.jit.is_tracing() or pad_h > 0 or pad_w > 0:  # (no padding: no copy)
            pads = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]
            x = F.pad(x, pads, value=float("-inf"))
        return fit_to_size(F.max_pool2d(x, self.kernel_size, self.stride), size)


class Resample(nn.Module):
    """One edge of a node graph: optional conv, then optional spatial op (the references also
    convolve before they downsample: TF ``conv_after_downsample=False``).

    Shapes: (N, C_in, h, w) -> (N, C_out, H, W), with (H, W) the target level's ``size``.
    """

    def __init__(self, conv: Optional[nn.Module] = None, spatial: Optional[nn.Module] = None):
        """
        Args:
            conv (nn.Module or None): a projection or a strided conv; None keeps the channels.
            spatial (nn.Module or None): an :class:`Upsample` or :class:`MaxPoolSame`; None keeps
                the resolution.
        """
        super().__init__()
        self.conv = conv if conv is not None else nn.Identity()
        self.spatial = spatial if spatial is not None else _KeepSize()

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        return self.spatial(self.conv(x), size)


class _KeepSize(nn.Module):
    """Spatial no-op with the ``(x, size)`` signature of the other spatial ops."""

    def forward(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        return x


class PoolingEdges:
    """Edge policy of BiFPN and NAS-FPN (and their TF references).

    A 1x1 projection (+ norm) when the channels differ (or always, with ``always_project``), then
    max-pooling with TF "SAME" padding to go down or nearest upsampling to go up. The pooling
    kernel is the stride (NAS-FPN) or the stride + 1 (BiFPN, ``overlapping_pool``).
    """

    def __init__(
        self,
        *,
        norm: str = "",
        norm_eps: Optional[float] = None,
        norm_momentum: Optional[float] = None,
        bias: Optional[bool] = None,
        overlapping_pool: bool = False,
        always_project: bool = False,
    ):
        """``bias``: as :func:`fpn_variants.layers.conv.build_conv` (None: only without norm)."""
        self.norm = norm
        self.norm_eps = norm_eps
        self.norm_momentum = norm_momentum
        self.bias = bias
        self.overlapping_pool = overlapping_pool
        self.always_project = always_project

    def __call__(self, edge) -> Resample:
        conv = None
        if self.always_project or edge.in_channels != edge.out_channels:
            conv = build_conv(
                edge.in_channels,
                edge.out_channels,
                1,
                norm=self.norm,
                norm_eps=self.norm_eps,
                norm_momentum=self.norm_momentum,
                bias=self.bias,
            )
        delta = edge.dst_level - edge.src_level
        spatial = None
        if delta > 0:
            stride = 2**delta
            spatial = MaxPoolSame(stride + 1 if self.overlapping_pool else stride, stride)
        elif delta < 0:
            spatial = Upsample(2**-delta, "nearest")
        return Resample(conv=conv, spatial=spatial)
