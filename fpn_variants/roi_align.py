"""RoIAlign as batched matrix products over RoI windows: the training path of the R-CNN poolers.

torchvision's CPU ``roi_align`` runs one thread; its backward walks every (RoI, channel, bin,
sample), recomputes the sample's bilinear weights for every channel and scatters four products
per sample. On a 2-core CPU it is the costliest op of an R-CNN training step after the
convolutions.

The bilinear sampling of RoIAlign is separable. For one RoI, let ``Ay`` (PH x H) hold the weights
with which each output row averages the feature rows (the two row taps of each of its samples,
divided by the number of samples per bin) and ``Ax`` (PW x W) the same for columns; then the
pooled map of channel c is ``Ay @ F[c] @ Ax^T``. Both matrices are zero outside a window of rows
[y0, y0 + Ly) and columns [x0, x0 + Lx) that covers the RoI's taps. So, with the input as a table
of NHWC rows (C values per pixel):

- forward: gather each RoI's window rows, then ``Ay_w @ window @ Ax_w^T`` as two batched matrix
  products;
- backward: ``Ay_w^T @ G @ Ax_w`` as two batched matrix products, then one (deterministic)
  index-add of the window rows into the input gradient.

Same function as torchvision's (``aligned``, ``sampling_ratio`` > 0 or adaptive, samples outside
[-1, size] dropped, borders clamped), up to float rounding: the sums run in another order.
"""

from typing import List, Tuple

import torch
from detectron2.layers import ROIAlign as _Detectron2ROIAlign
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torchvision.ops import roi_align as _torchvision_roi_align

__all__ = ["ROIAlign", "RoIWindows", "roi_align"]


class _Taps:
    """Taps along one axis of every sample: (R, P, G) lower / upper indices and weights."""

    def __init__(self, start, bin_size, grid, grid_max: int, pooled: int, size: int):
        """Sample g of bin p of RoI r lies at ``start + p * bin + (g + 0.5) * bin / grid``
        (torchvision's order of float operations); samples outside [-1, size] and beyond the
        RoI's own ``grid`` weigh nothing, the others are clamped to [0, size - 1]."""
        dtype, device = start.dtype, start.device
        bins = torch.arange(pooled, dtype=dtype, device=device)
        offsets = torch.arange(grid_max, dtype=dtype, device=device) + 0.5
        base = start[:, None] + bins * bin_size[:, None]
        step = offsets * bin_size[:, None] / grid.clamp(min=1)[:, None].to(dtype)
        coords = base[:, :, None] + step[:, None, :]
        sample = torch.arange(grid_max, device=device)
        valid = (coords >= -1.0) & (coords <= size) & (sample < grid[:, None, None])
        coords = torch.where(valid, coords, 0.0).clamp(0.0, size - 1)
        self.low = coords.long()
        self.high = (self.low + 1).clamp(max=size - 1)
        frac = coords - self.low
        zero = torch.zeros((), dtype=dtype, device=device)
        self.w_low = torch.where(valid, 1.0 - frac, zero)
        self.w_high = torch.where(valid, frac, zero)
        self.size = size
        num = start.shape[0]
        # Window [first, first + span) of each RoI; one without valid samples gets a 1-long
        # window whose weights are all zero.
        first = torch.where(valid, self.low, size).view(num, -1).amin(1)
        last = torch.where(valid, self.high, -1).view(num, -1).amax(1)
        self.first = first.clamp(max=size - 1)
        self.span = (last - self.first + 1).clamp(min=1)

    def window(self, index: torch.Tensor, length: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Origins (n,) and (n, P, length) weights of the RoIs ``index`` (n,) for windows of
        ``length`` (at least their spans), kept inside the map."""
        origin = self.first[index].clamp(max=self.size - length)
        # Valid taps fall inside the window; invalid ones (weight 0) are clamped into it.
        low = (self.low[index] - origin[:, None, None]).clamp(0, length - 1)
        high = (self.high[index] - origin[:, None, None]).clamp(0, length - 1)
        weights = self.w_low.new_zeros((len(index), low.shape[1], length))
        weights.scatter_add_(2, low, self.w_low[index])
        weights.scatter_add_(2, high, self.w_high[index])
        return origin, weights


class _WindowGroup:
    """RoIs whose windows share one padded size: their indices (g,), pixel rows of their
    windows in the NHWC table (g, Ly, Lx), row weights (g, PH, Ly) divided by the sample count
    and column weights (g, PW, Lx)."""

    def __init__(self, index, pixels, weights_y, weights_x):
        self.index = index
        self.pixels = pixels
        self.weights_y = weights_y
        self.weights_x = weights_x


class RoIWindows:
    """Sampling geometry of one ``roi_align`` call, shared by its forward and backward.

    RoIs are grouped by window size rounded up to a power of two per axis, so that a window
    padded to its group's largest never holds much more than its RoI needs.
    """

    def __init__(
        self,
        rois: torch.Tensor,
        input_shape: Tuple[int, int, int, int],
        output_size: Tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ):
        """
        Args:
            rois (Tensor): (R, 5) rows ``[batch index, x1, y1, x2, y2]`` (input coordinates
                times ``1 / spatial_scale``).
            input_shape: (N, C, H, W) of the pooled feature map.
            output_size, spatial_scale, sampling_ratio, aligned: as ``torchvision.ops.roi_align``.
        """
        n, c, h, w = input_shape
        self.input_shape = (n, c, h, w)
        self.output_size = output_size
        self.num_rois = num = rois.shape[0]
        self.groups: List[_WindowGroup] = []
        if num == 0:
            return
        pooled_h, pooled_w = output_size
        boxes = rois[:, 1:] * spatial_scale - (0.5 if aligned else 0.0)
        roi_w, roi_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        if not aligned:  # the legacy rule makes malformed RoIs 1x1
            roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
        if sampling_ratio > 0:
            grid_y = grid_x = torch.full((num,), sampling_ratio, device=rois.device)
        else:  # adaptive: ceil(RoI size / bins) samples per bin
            grid_y = torch.ceil(roi_h / pooled_h).long().clamp(min=0)
            grid_x = torch.ceil(roi_w / pooled_w).long().clamp(min=0)
        grid_max = max(int(grid_y.max()), int(grid_x.max()), 1)
        taps_y = _Taps(boxes[:, 1], roi_h / pooled_h, grid_y, grid_max, pooled_h, h)
        taps_x = _Taps(boxes[:, 0], roi_w / pooled_w, grid_x, grid_max, pooled_w, w)
        count = (grid_y * grid_x).clamp(min=1).to(rois.dtype)
        batch = rois[:, 0].long()
        sizes = torch.ceil(torch.log2(taps_y.span.double())) * 64 + torch.ceil(
            torch.log2(taps_x.span.double())
        )
        for size in torch.unique(sizes):
            index = torch.nonzero(sizes == size).flatten()
            len_y, len_x = int(taps_y.span[index].max()), int(taps_x.span[index].max())
            y0, weights_y = taps_y.window(index, len_y)
            x0, weights_x = taps_x.window(index, len_x)
            rows = (batch[index] * h + y0)[:, None] + torch.arange(len_y, device=rois.device)
            cols = x0[:, None] + torch.arange(len_x, device=rois.device)
            pixels = rows[:, :, None] * w + cols[:, None, :]
            weights_y = weights_y / count[index, None, None]
            self.groups.append(_WindowGroup(index, pixels, weights_y, weights_x))

    def _rows(self, values: torch.Tensor, group: _WindowGroup) -> torch.Tensor:
        """``values`` (R, ...) of the group's RoIs (a view when the group holds them all)."""
        return values if len(self.groups) == 1 else values[group.index]

    def pool(self, input: torch.Tensor) -> torch.Tensor:
        """RoIAlign of ``input`` (N, C, H, W) -> (R, C, PH, PW), contiguous."""
        n, c, h, w = self.input_shape
        pooled_h, pooled_w = self.output_size
        out = input.new_zeros(self.num_rois, pooled_h, pooled_w, c)
        table = input.permute(0, 2, 3, 1).reshape(n * h * w, c)
        for group in self.groups:
            size = len(group.index)
            window = table.index_select(0, group.pixels.flatten()).view(
                size, -1, c * group.pixels.shape[2]
            )
            # (g, PH, Lx, C): output rows; then (g, PH, PW, C): output bins.
            rows = torch.bmm(group.weights_y, window).view(size, pooled_h, -1, c)
            bins = torch.matmul(group.weights_x.unsqueeze(1), rows)
            if len(self.groups) == 1:
                out = bins
            else:
                out.index_copy_(0, group.index, bins)
        return out.permute(0, 3, 1, 2).contiguous()

    def pool_grad(self, grad_output: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """Gradient of :meth:`pool` for ``grad_output`` (R, C, PH, PW) -> (N, C, H, W),
        contiguous or (``channels_last``) in channels-last memory format, as its input."""
        n, c, h, w = self.input_shape
        pooled_h = self.output_size[0]
        grad_table = grad_output.new_zeros(n * h * w, c)
        grad_bins = grad_output.permute(0, 2, 3, 1)  # (R, PH, PW, C)
        for group in self.groups:
            size = len(group.index)
            # (g, PH, Lx, C): each bin spread over the window's columns; then (g, Ly, Lx * C):
            # each output row over the window's rows.
            rows = torch.matmul(
                group.weights_x.transpose(1, 2).unsqueeze(1), self._rows(grad_bins, group)
            )
            window = torch.bmm(group.weights_y.transpose(1, 2), rows.reshape(size, pooled_h, -1))
            # index_add_ on the CPU: window rows added in index order, each a vectorized C-wide
            # add; deterministic, and ~8x faster here than scatter_add_ with an index expanded
            # over the channels (index_put_ with accumulate adds atomically in parallel).
            grad_table.index_add_(0, group.pixels.flatten(), window.reshape(-1, c))
        grad = grad_table.view(n, h, w, c).permute(0, 3, 1, 2)  # channels-last strides
        return grad if channels_last else grad.contiguous()


class _ROIAlignFunction(torch.autograd.Function):
    # custom_bwd: the backward runs with the forward's autocast state (off, see ROIAlign), also
    # when called under autocast.
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, input, rois, output_size, spatial_scale, sampling_ratio, aligned):
        windows = RoIWindows(
            rois, tuple(input.shape), output_size, spatial_scale, sampling_ratio, aligned
        )
        ctx.windows = windows
        ctx.channels_last = input.dim() == 4 and input.is_contiguous(
            memory_format=torch.channels_last
        )
        return windows.pool(input)

    @staticmethod
    @once_differentiable
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad_output):
        grad_input = ctx.windows.pool_grad(grad_output, ctx.channels_last)
        return grad_input, None, None, None, None, None


@torch.jit.unused
def roi_align(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: Tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` (same arguments, ``rois`` an (R, 5) tensor of the input's
    dtype) computed by :class:`RoIWindows`."""
    return _ROIAlignFunction.apply(input, rois, output_size, spatial_scale, sampling_ratio, aligned)


class ROIAlign(_Detectron2ROIAlign):
    """Detectron2's ``ROIAlign`` (same arguments, same function) computed by :class:`RoIWindows`
    when training on the CPU (an input that requires grad).

    Scripting, tracing, inference and other devices run torchvision's op as Detectron2 does.
    Under autocast both paths sample in float32 (boxes and features) and return the input's
    dtype; the batched matrix products and the ``index_add_`` of the backward run in float32.
    Shapes: input (N, C, H, W), rois (R, 5) -> (R, C, *output_size).
    """

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        assert rois.dim() == 2 and rois.size(1) == 5
        if input.is_quantized:
            input = input.dequantize()
        if not torch.jit.is_scripting() and _autocast_enabled(input):
            return _float32_roi_align(self, input, rois)
        rois = rois.to(dtype=input.dtype)
        if (
            not torch.jit.is_scripting()
            and not torch.jit.is_tracing()
            and input.requires_grad
            and torch.is_grad_enabled()
            and input.device.type == "cpu"
        ):
            return roi_align(
                input,
                rois,
                _pair(self.output_size),
                self.spatial_scale,
                self.sampling_ratio,
                self.aligned,
            )
        return _torchvision_roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )


@torch.jit.unused
def _autocast_enabled(input: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(input.device.type)


@torch.jit.unused
def _float32_roi_align(op: ROIAlign, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """``op`` under autocast: sampled in float32, returned in ``input``'s dtype (as torchvision's
    autocast rule for ``roi_align``). Detectron2 casts the boxes to the input's dtype: in
    bfloat16 (8-bit mantissa) a coordinate near 1000 px would move by up to 4 px."""
    with torch.autocast(input.device.type, enabled=False):
        return op(input.float(), rois.float()).to(input.dtype)
