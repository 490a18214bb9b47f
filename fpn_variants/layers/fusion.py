"""Fusion ops: how a node merges its (already resampled, same-shape) inputs.

- ``sum`` / ``avg``: FPN (Lin et al. 2017, section 3), PANet, NAS-FPN sum cells.
- ``fast_normalized``: BiFPN (Tan et al. 2020, section 3.3), O = sum_i w_i I_i / (eps + sum_j w_j)
  with w = ReLU(learned scalars), one per input edge, initialised to 1, eps = 1e-4.
- ``softmax``: BiFPN's softmax-based fusion, O = sum_i softmax(w)_i I_i.
- ``global_attention``: NAS-FPN's global-pooling merge, O = A + B * sigmoid(pool_HW(A)).
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FUSIONS",
    "AvgFusion",
    "FastNormalizedFusion",
    "GlobalAttentionFusion",
    "SoftmaxFusion",
    "SumFusion",
    "build_fusion",
]

FUSIONS = ("sum", "avg", "fast_normalized", "softmax", "global_attention")


class SumFusion(nn.Module):
    """Element-wise sum. Shapes: n x (N, C, H, W) -> (N, C, H, W)."""

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class AvgFusion(nn.Module):
    """Element-wise mean. Shapes: n x (N, C, H, W) -> (N, C, H, W)."""

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / len(xs)


class _WeightedFusion(nn.Module):
    """Sum of inputs scaled by normalized learned per-edge scalars (initialised to 1)."""

    def __init__(self, num_inputs: int):
        super().__init__()
        self.edge_weights = nn.Parameter(torch.ones(num_inputs))

    def normalized_weights(self) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        # float32 parameters and ops that autocast leaves in float32: the weights stay float32;
        # each 0-d weight multiplies a feature in the feature's dtype.
        weights = self.normalized_weights()
        out = xs[0] * weights[0]
        for i in range(1, len(xs)):
            # One fused pass per input; in place on a fresh tensor (autograd keeps xs and weights).
            out = out.addcmul_(xs[i], weights[i])
        return out


class FastNormalizedFusion(_WeightedFusion):
    """BiFPN fast normalized fusion: w = ReLU(w); O = sum_i w_i I_i / (eps + sum_j w_j)."""

    eps: torch.jit.Final[float]

    def __init__(self, num_inputs: int, eps: float = 1e-4):
        super().__init__(num_inputs)
        self.eps = eps

    def normalized_weights(self) -> torch.Tensor:
        weights = F.relu(self.edge_weights)
        return weights / (weights.sum() + self.eps)


class SoftmaxFusion(_WeightedFusion):
    """BiFPN softmax-based fusion: O = sum_i softmax(w)_i I_i."""

    def normalized_weights(self) -> torch.Tensor:
        return torch.softmax(self.edge_weights, dim=0)


class GlobalAttentionFusion(nn.Module):
    """NAS-FPN global-pooling merge of two inputs: O = A + B * sigmoid(pool_HW(A)).

    The authors' TF code takes A = the input from the coarser source level and pools by max;
    mmdetection takes A = the finer one and pools by average.
    Shapes: 2 x (N, C, H, W) -> (N, C, H, W).
    """

    gate_index: torch.jit.Final[int]
    pool: torch.jit.Final[str]

    def __init__(self, gate_index: int, pool: str = "max"):
        """
        Args:
            gate_index (int): which of the two inputs is A (0 or 1).
            pool (str): "max" (TF reference) or "avg" (mmdetection).
        """
        super().__init__()
        if gate_index not in (0, 1):
            raise ValueError(f"gate_index={gate_index} must be 0 or 1")
        if pool not in ("max", "avg"):
            raise ValueError(f"pool={pool!r} is not one of ['max', 'avg']")
        self.gate_index = gate_index
        self.pool = pool

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        gate, other = xs[self.gate_index], xs[1 - self.gate_index]
        # The attention in float32 also under autocast (a bfloat16 mean over H x W would be
        # rounded to 8 bits), applied in the features' dtype.
        if self.pool == "max":
            pooled = torch.amax(gate, dim=(2, 3), keepdim=True).float()
        else:
            pooled = torch.mean(gate, dim=(2, 3), keepdim=True, dtype=torch.float32)
        return gate + other * torch.sigmoid(pooled).to(other.dtype)


def build_fusion(
    method: str,
    num_inputs: int,
    *,
    eps: float = 1e-4,
    gate_index: int = 0,
    pool: str = "max",
) -> nn.Module:
    """Fusion module by name (one of :data:`FUSIONS`) for ``num_inputs`` inputs."""
    if method not in FUSIONS:
        raise ValueError(f"fusion={method!r} is not one of {list(FUSIONS)}")
    if method == "global_attention":
        if num_inputs != 2:
            raise ValueError(f"fusion='global_attention' merges 2 inputs, got {num_inputs}")
        return GlobalAttentionFusion(gate_index, pool)
    if num_inputs == 1 or method == "sum":
        return SumFusion()
    if method == "avg":
        return AvgFusion()
    if method == "fast_normalized":
        return FastNormalizedFusion(num_inputs, eps)
    return SoftmaxFusion(num_inputs)
